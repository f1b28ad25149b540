package leader

import (
	"context"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

func TestOneLeaderAndFastHandoverOnResign(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	o := Options{Key: "test/leader", SessionTTL: 10 * time.Second, LockDelay: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	first, err := Campaign(ctx, c.Client, o, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan *Term, 1)
	go func() {
		term, err := Campaign(ctx, c.Client, o, logging.Discard())
		if err == nil {
			second <- term
		}
	}()
	select {
	case <-second:
		t.Fatal("two leaders at once")
	case <-time.After(500 * time.Millisecond): // nothing to wait on: a second leader would show up here
	}
	resigned := time.Now()
	if err := first.Resign(); err != nil {
		t.Fatal(err)
	}
	select {
	case term := <-second:
		if d := time.Since(resigned); d > 2*time.Second {
			t.Errorf("handover after a resignation took %s, want under 2s", d)
		}
		if term.Fence <= first.Fence {
			t.Errorf("fence %d after %d: must grow", term.Fence, first.Fence)
		}
		select {
		case <-first.Lost:
		default:
			t.Error("the resigned term's Lost is not closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no handover within 5s of a resignation")
	}
}

func TestLeadershipEndsWhenTheSessionIsDestroyed(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	term, err := Campaign(context.Background(), c.Client, Options{Key: "test/leader2"}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	pair, _, _ := c.Client.KV().Get("test/leader2", nil)
	if pair == nil || pair.Session == "" {
		t.Fatalf("lock not held: %+v", pair)
	}
	// What the agent does when the holder's health check fails.
	if _, err := c.Client.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-term.Lost:
	case <-time.After(10 * time.Second):
		t.Fatal("leadership not lost after its session ended")
	}
}
