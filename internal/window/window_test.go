package window

import (
	"testing"
	"time"
)

func TestStartAtTheBoundaries(t *testing.T) {
	const size = 5000
	cases := []struct{ event, want int64 }{
		{0, 0}, {1, 0}, {4999, 0}, {5000, 5000}, {5001, 5000}, {9999, 5000},
		{1_700_000_004_999, 1_700_000_000_000}, {1_700_000_005_000, 1_700_000_005_000},
		{-1, -5000}, {-5000, -5000}, {-5001, -10000},
	}
	for _, c := range cases {
		if got := Start(c.event, size); got != c.want {
			t.Errorf("Start(%d, %d) = %d, want %d", c.event, size, got, c.want)
		}
	}
}

func TestOfGivesHalfOpenSpans(t *testing.T) {
	s := Of(1_700_000_005_000, 5*time.Second)
	if s.StartMs != 1_700_000_005_000 || s.EndMs != 1_700_000_010_000 {
		t.Fatalf("span %+v", s)
	}
	if !s.End().Equal(s.Start().Add(5*time.Second)) || s.Start().Location() != time.UTC {
		t.Fatalf("times %v %v", s.Start(), s.End())
	}
}

func TestAverageIsExactFloatDivision(t *testing.T) {
	cases := []struct {
		sum, count int64
		want       float64
	}{
		{0, 0, 0}, {7, 2, 3.5}, {10000, 1, 10000}, {1, 3, 1.0 / 3.0}, {500050, 100, 5000.5},
	}
	for _, c := range cases {
		if got := Average(c.sum, c.count); got != c.want {
			t.Errorf("Average(%d, %d) = %v, want %v", c.sum, c.count, got, c.want)
		}
	}
}
