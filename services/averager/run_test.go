package averager

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
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

// An error that every term would repeat stops the averager with that
// error (exit code 1) instead of campaigning and resigning forever.
func TestAnAveragerThatCannotConsumeStops(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	o, err := ParseArgs([]string{"--write-token", "secret-token", "--consul-addr", c.HTTPAddr,
		"--http-addr", testenv.Addr(testenv.FreePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	o.LookupdPollInterval = 10 * time.Minute // past validation: go-nsq refuses it
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), o, logging.Discard()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lookupd_poll_interval") {
			t.Fatalf("Run returned %v, want go-nsq's refusal of lookupd_poll_interval", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30s after its first term failed for good")
	}
}
