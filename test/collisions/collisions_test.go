// Package collisions checks the no-collision guarantee on real servers:
// generators as processes on a real Consul and nsqd, restarted and joined
// while they run, audited by an independent consumer that groups every
// value by slot.
package collisions

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// phase runs n generators at interval on their own topic and coordination
// group until the audit has seen minSlots slots with two or more values (or
// for at least minDuration), killing and restarting one generator and
// adding one midway.
type phase struct {
	name        string
	n           int
	interval    time.Duration
	minSlots    int
	minDuration time.Duration
	extraArgs   []string
}

type result struct{ slots, shared, values, collisions int }

func TestNoCollisions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs generators against consul and nsqd")
	}
	slots := 100000
	if s := os.Getenv("LOOPSTOCK_COLLISION_SLOTS"); s != "" {
		slots, _ = strconv.Atoi(s)
	}
	c := testenv.StartConsul(t)
	nsq := testenv.StartNSQ(t)
	nsq.RegisterIn(t, c)
	c.WaitPassing(t, "nsqd", 1, 20*time.Second)

	phases := []phase{
		{name: "3 generators, 100ms", n: 3, interval: 100 * time.Millisecond, minSlots: 200, minDuration: 30 * time.Second},
		{name: "20 generators, 1ms", n: 20, interval: time.Millisecond, minSlots: slots, minDuration: 10 * time.Second,
			extraArgs: []string{"--batch-wait", "25ms", "--lease-ahead", "500ms"}},
	}
	var total result
	for i, ph := range phases {
		r := runPhase(t, c, nsq, i, ph)
		t.Logf("%s: slots=%d (with 2+ values: %d) values=%d collisions=%d", ph.name, r.slots, r.shared, r.values, r.collisions)
		total.slots += r.shared
		total.collisions += r.collisions
		total.values += r.values
	}
	if total.collisions != 0 {
		t.Errorf("%d collisions", total.collisions)
	}
	if total.slots < slots {
		t.Errorf("only %d slots with two or more values were audited, want %d", total.slots, slots)
	}
	// The summary line `make test-collisions` ends with.
	fmt.Printf("slots=%d collisions=%d\n", total.slots, total.collisions)
}

func runPhase(t *testing.T, c *testenv.Consul, nsq *testenv.NSQ, i int, ph phase) result {
	topic := fmt.Sprintf("collisions-%d", i)
	nsq.CreateChannel(t, topic, "audit")
	audit := testenv.StartAudit(t, nsq.NSQDTCP, topic, "audit")
	args := append([]string{"--topic", topic, "--interval", ph.interval.String(), "--coordination-prefix", "test/collisions/" + topic,
		"--consul-addr", c.HTTPAddr, "--log-level", "warn"}, ph.extraArgs...)
	var gens []*testenv.Proc
	start := func() *testenv.Proc {
		port := testenv.FreePort(t)
		p := testenv.NewProc(t, fmt.Sprintf("gen-%d-%d", i, len(gens)), testenv.Binary(t, "integer-gen"),
			append(args, "--http-addr", testenv.Addr(port), "--service-id", fmt.Sprintf("gen-%d", port))...)
		p.Start()
		gens = append(gens, p)
		return p
	}
	for j := 0; j < ph.n; j++ {
		start()
	}
	began := time.Now()
	restarted, joined := false, false
	var r result
	deadline := began.Add(ph.minDuration + time.Duration(ph.minSlots)*ph.interval*3 + time.Minute)
	for {
		time.Sleep(time.Second) // the audit accumulates; there is nothing to poll for but its size
		r = countSlots(audit)
		elapsed := time.Since(began)
		progress := float64(r.shared) / float64(ph.minSlots)
		if !restarted && (progress > 0.3 || elapsed > ph.minDuration/3) {
			gens[0].Kill() // SIGKILL: its index is freed only when Consul ends its session
			gens[0].Start()
			restarted = true
		}
		if !joined && (progress > 0.6 || elapsed > 2*ph.minDuration/3) {
			start()
			joined = true
		}
		if r.shared >= ph.minSlots && elapsed >= ph.minDuration && restarted && joined {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: only %d shared slots after %s", ph.name, r.shared, elapsed.Round(time.Second))
			break
		}
	}
	for _, g := range gens {
		g.Stop(5 * time.Second)
	}
	return countSlots(audit)
}

func countSlots(a *testenv.Audit) result {
	bySlot := map[int64]map[uint32]bool{}
	var r result
	for _, rec := range a.Records() {
		vals := bySlot[rec.EventMs]
		if vals == nil {
			vals = map[uint32]bool{}
			bySlot[rec.EventMs] = vals
		}
		r.values++
		if vals[rec.Value] {
			r.collisions++
		}
		vals[rec.Value] = true
	}
	r.slots = len(bySlot)
	for _, v := range bySlot {
		if len(v) >= 2 {
			r.shared++
		}
	}
	return r
}
