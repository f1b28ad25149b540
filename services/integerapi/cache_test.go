package integerapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/windowapi"
)

type countingStore struct {
	memStore
	reads int
}

func (s *countingStore) Latest(ctx context.Context, n int) ([]windowapi.Window, error) {
	s.reads++
	return s.memStore.Latest(ctx, n)
}

func TestCacheReadsTheStoreAtMostOncePerTTL(t *testing.T) {
	s := &countingStore{memStore: memStore{windows: windows(3)}}
	c := newCache(s, CacheTTL, nil)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	for i := 0; i < 5; i++ {
		snap, err := c.get(context.Background())
		if err != nil || len(snap.windows) != 3 {
			t.Fatalf("%v %v", snap, err)
		}
	}
	if s.reads != 1 {
		t.Fatalf("%d store reads within the TTL, want 1", s.reads)
	}
	now = now.Add(CacheTTL)
	c.get(context.Background())
	c.invalidate()
	c.get(context.Background())
	if s.reads != 3 {
		t.Fatalf("%d store reads, want one more after the TTL and one after a write", s.reads)
	}
	s.err = errors.New("redis down")
	now = now.Add(CacheTTL)
	if _, err := c.get(context.Background()); err == nil {
		t.Fatal("a failed refresh served stale windows: the API must say 503")
	}
}

func TestCachedJSONIsTheWindows(t *testing.T) {
	c := newCache(&memStore{windows: windows(12)}, CacheTTL, nil)
	snap, _ := c.get(context.Background())
	if string(snap.listJSON(10)) != string(encode(windows(12)[:10])) || string(snap.lastJSON()) != string(encode(windows(1)[0])) {
		t.Fatal("cached JSON differs from the windows")
	}
	empty, _ := newCache(&memStore{}, CacheTTL, nil).get(context.Background())
	if string(empty.listJSON(10)) != "[]\n" || empty.lastJSON() != nil {
		t.Fatalf("empty: %q %q", empty.listJSON(10), empty.lastJSON())
	}
}

func TestEachNewWindowIsReportedOnceWhenFirstServed(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC)
	s := &memStore{windows: windows(3)} // the newest ends at 00:00:05, the others before the cache was made
	type served struct {
		end time.Time
		at  time.Time
	}
	var got []served
	c := newCache(s, CacheTTL, func(w windowapi.Window, at time.Time) { got = append(got, served{w.End, at}) })
	c.now = func() time.Time { return now }
	c.newestEnd = now // as newCache does with the real clock

	now = now.Add(4 * time.Second) // 00:00:06
	c.get(context.Background())
	if len(got) != 1 || !got[0].end.Equal(s.windows[0].End) || !got[0].at.Equal(now) {
		t.Fatalf("first read reported %v; want only the window that ended after the cache was made, at %v", got, now)
	}
	// Two newer windows land at once; re-reads and amendments report nothing.
	next := windows(3)
	for i := range next {
		next[i].Start, next[i].End = next[i].Start.Add(10*time.Second), next[i].End.Add(10*time.Second)
	}
	s.windows = append(next[:2], s.windows...)
	now = now.Add(10 * time.Second)
	c.invalidate()
	c.get(context.Background())
	c.invalidate()
	c.get(context.Background())
	if len(got) != 3 || !got[1].end.Before(got[2].end) || !got[2].end.Equal(s.windows[0].End) {
		t.Fatalf("reported %v; want each of the two new windows once, oldest first", got)
	}
}
