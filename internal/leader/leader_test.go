package leader

import (
	"context"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

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

// A frozen agent (SIGSTOP: connections open, no answers) must neither keep
// a leader leading past its session's TTL nor hang its resignation.
func TestLeadershipEndsWhenConsulFreezesForATTL(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	term, err := Campaign(context.Background(), c.Client, Options{Key: "test/frozen", SessionTTL: 10 * time.Second}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	c.Signal(syscall.SIGSTOP)
	defer c.Signal(syscall.SIGCONT)
	frozen := time.Now()
	select {
	case <-term.Lost:
		if d := time.Since(frozen); d < 5*time.Second {
			t.Errorf("leadership given up %s after the freeze: the session may live up to its TTL", d.Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still leading 15s after Consul froze: the session's 10s TTL may have run out")
	}
	resigned := make(chan error, 1)
	go func() { resigned <- term.Resign() }()
	select {
	case err := <-resigned:
		if err == nil {
			t.Error("resigning against a frozen agent reported success")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("resigning hangs on a frozen agent")
	}
}

// After a Consul restart that lost the session, the leader steps down
// within 1s of the agent being back.
func TestLeaderStepsDownWhenItsSessionIsGoneAfterARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t) // a dev agent: a restart forgets every session
	term, err := Campaign(context.Background(), c.Client, Options{Key: "test/restart", SessionTTL: 10 * time.Second}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	c.Kill()
	c.Start()
	c.WaitReady(t)
	back := time.Now()
	select {
	case <-term.Lost:
	case <-time.After(5 * time.Second):
		t.Fatal("still leading 5s after Consul came back without the session")
	}
	if d := time.Since(back); d > time.Second {
		t.Errorf("stepped down %s after Consul was back, want within 1s", d.Round(time.Millisecond))
	}
}

// A process restarted under the same service ID (same check) within a
// second of a SIGKILL takes the lock at once: its predecessor's session,
// tied to a check that passes again, is destroyed instead of waiting out
// its TTL.
func TestARestartedHolderDoesNotWaitForItsOwnDeadSession(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	const check = "test-leader-check"
	if err := c.Client.Agent().CheckRegister(&consul.AgentCheckRegistration{ID: check, Name: check,
		AgentServiceCheck: consul.AgentServiceCheck{TTL: "1h", Status: consul.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	o := Options{Key: "test/restarted", CheckID: check, SessionTTL: 10 * time.Second, LockDelay: time.Second}
	// The dead run: its session holds the key, nobody renews it.
	sid, _, err := c.Client.Session().Create(&consul.SessionEntry{TTL: "10s", LockDelay: time.Second,
		Checks: []string{"serfHealth", check}, Behavior: consul.SessionBehaviorRelease}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.Client.KV().Acquire(&consul.KVPair{Key: o.Key, Session: sid}, nil); err != nil || !ok {
		t.Fatalf("the dead run's lock: %v %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	term, err := Campaign(ctx, c.Client, o, logging.Discard())
	if err != nil {
		t.Fatalf("no leadership: %v", err)
	}
	defer term.Resign()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the restarted holder led after %s, want within 5s", d.Round(time.Millisecond))
	}
}
