package watch_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/watch"
)

// Against a real agent: changes are handed over, blocking queries that
// time out are not, and the loop follows the key again after the agent
// restarted (a dev agent, which forgets its data and starts its index over).
func TestFollowsAKeyThroughARealAgentAndItsRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	kv := c.Client.KV()
	put := func(v string) {
		t.Helper()
		if _, err := kv.Put(&consul.KVPair{Key: "test/watch", Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var queries, failures atomic.Int64
	seen := make(chan string, 16)
	o := watch.Options{Wait: time.Second, Backoff: watch.Backoff{First: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		OnError: func(error, time.Duration) error { failures.Add(1); return nil }}
	stopped := make(chan error, 1)
	go func() {
		stopped <- watch.Run(ctx, o, func(q *consul.QueryOptions) (*consul.KVPair, *consul.QueryMeta, error) {
			queries.Add(1)
			return kv.Get("test/watch", q)
		}, func(p *consul.KVPair) (watch.Next, error) {
			if p == nil {
				seen <- "(none)"
			} else {
				seen <- string(p.Value)
			}
			return watch.WaitForChange, nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("handed over %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not handed over within 10s", want)
		}
	}
	expect("1")

	before := queries.Load()
	testenv.Eventually(t, 10*time.Second, "two blocking queries to time out", func() bool { return queries.Load() >= before+2 })
	select {
	case got := <-seen:
		t.Fatalf("handed over %q again though the key did not change", got)
	default:
	}
	put("2")
	expect("2")

	c.Kill()
	testenv.Eventually(t, 10*time.Second, "a failed query while the agent is down", func() bool { return failures.Load() > 0 })
	c.Start()
	c.WaitReady(t)
	expect("(none)") // the restarted dev agent has no such key
	put("3")
	expect("3")

	cancel()
	select {
	case err := <-stopped:
		if err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still running 5s after its context ended")
	}
}
