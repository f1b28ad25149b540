package averager

import (
	"testing"
	"time"
)

func TestTermBackoffGrowsWithJitterAndStartsOver(t *testing.T) {
	var b backoff
	seen := map[time.Duration]bool{}
	for range 50 {
		b.reset()
		first := b.next()
		if first < 125*time.Millisecond || first > 250*time.Millisecond {
			t.Fatalf("first pause %s, want 125ms..250ms", first)
		}
		seen[first] = true
	}
	if len(seen) < 10 {
		t.Errorf("%d distinct first pauses in 50: no jitter", len(seen))
	}
	b.reset()
	var last time.Duration
	for range 20 {
		last = b.next()
	}
	if last < 7500*time.Millisecond || last > 15*time.Second {
		t.Errorf("pause after 20 failed terms %s, want 7.5s..15s (the cap)", last)
	}
}
