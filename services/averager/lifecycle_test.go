package averager

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/wire"
)

// The held-message lifecycle against a reference model: simNSQ behaves as
// nsqd does towards one consumer (a message not touched or finished within
// its timeout is delivered again, with the same id; FIN of any copy
// finishes the id), simStore as integer-api does (idempotent per piece),
// and the clock advances only when the model says so, including during a
// slow write. The two properties:
//
//   - a message is FINished only once all its integers are stored (or
//     dead-lettered: a piece stamped far in the future);
//   - every integer published is stored exactly once, or dead-lettered and
//     never stored.

const simTimeout = 15 * time.Second

type seqKey struct {
	inst wire.InstanceID
	seq  uint64
}

type simNSQ struct {
	now      time.Time
	bodies   map[uint64][]byte
	queue    []uint64
	inflight map[uint64]time.Time // id → deadline
	store    *simStore
	dead     *simDead
	errs     []string
	// what the run exercised
	timeouts, requeues int
}

type simMsg struct {
	n    *simNSQ
	id   uint64
	body []byte
}

func (m *simMsg) Body() []byte { return m.body }
func (m *simMsg) Touch() {
	if _, ok := m.n.inflight[m.id]; ok {
		m.n.inflight[m.id] = m.n.now.Add(simTimeout)
	}
}
func (m *simMsg) Requeue(time.Duration) {
	if _, ok := m.n.inflight[m.id]; ok {
		delete(m.n.inflight, m.id)
		m.n.queue = append(m.n.queue, m.id)
		m.n.requeues++
	}
}
func (m *simMsg) Finish() {
	if _, ok := m.n.inflight[m.id]; !ok {
		return // nsqd answers E_FIN_FAILED
	}
	var b wire.Batch
	if err := wire.Decode(m.body, wire.Limits{Min: 1, Max: 10000}, &b); err == nil {
		for i := range b.Items {
			if k := (seqKey{b.Instance, b.Seq(i)}); m.n.store.stored[k] == 0 && !m.n.dead.rejected[k] {
				m.n.errs = append(m.n.errs, fmt.Sprintf("t=%s: message %d (seqs %d..%d) FINished before its integer seq %d was stored",
					m.n.now.Sub(time.UnixMilli(t0)), m.id, b.FirstSeq, b.Seq(len(b.Items)-1), b.Seq(i)))
				break
			}
		}
	}
	delete(m.n.inflight, m.id)
}

// advance moves the clock, timing out messages in flight on the way.
func (n *simNSQ) advance(d time.Duration) {
	n.now = n.now.Add(d)
	var expired []uint64
	for id, deadline := range n.inflight {
		if !deadline.After(n.now) {
			expired = append(expired, id)
		}
	}
	slices.Sort(expired) // the same order in every run of a seed
	for _, id := range expired {
		delete(n.inflight, id)
		n.queue = append(n.queue, id)
	}
	n.timeouts += len(expired)
}

func (n *simNSQ) deliver(rng *rand.Rand) *simMsg {
	i := rng.IntN(len(n.queue))
	id := n.queue[i]
	n.queue = append(n.queue[:i], n.queue[i+1:]...)
	n.inflight[id] = n.now.Add(simTimeout)
	return &simMsg{n: n, id: id, body: n.bodies[id]}
}

type simStore struct {
	n            *simNSQ
	fail, slow   bool
	stored       map[seqKey]int
	pieces       map[string]bool
	puts, failed int
}

func (s *simStore) Put(_ context.Context, _ time.Time, w windowapi.Write) (windowapi.WriteResult, error) {
	s.puts++
	if s.slow {
		s.n.advance(5 * time.Second) // a hung store: the write's whole timeout
	}
	if s.fail {
		s.failed++
		return windowapi.WriteResult{}, errors.New("store unavailable")
	}
	var res windowapi.WriteResult
	for _, p := range w.Pieces {
		key := fmt.Sprintf("%s/%d-%d", p.Instance, p.FirstSeq, p.LastSeq)
		if s.pieces[key] {
			res.Pieces = append(res.Pieces, windowapi.Duplicate)
			continue
		}
		var inst wire.InstanceID
		if raw, err := hex.DecodeString(p.Instance); err != nil || len(raw) != len(inst) {
			return res, fmt.Errorf("instance %q: %v", p.Instance, err)
		} else {
			copy(inst[:], raw)
		}
		s.pieces[key] = true
		for seq := p.FirstSeq; seq <= p.LastSeq; seq++ {
			s.stored[seqKey{inst, seq}]++
		}
		res.Pieces = append(res.Pieces, windowapi.Added)
	}
	return res, nil
}

// simDead is the dead-letter topic, unreachable while down.
type simDead struct {
	down     bool
	rejected map[seqKey]bool
}

func (d *simDead) Reject(_, _ string, body []byte) error {
	if d.down {
		return errors.New("dead-letter topic unreachable")
	}
	var b wire.Batch
	if err := wire.Decode(body, wire.Limits{Min: 1, Max: 10000}, &b); err != nil {
		return err
	}
	for i := range b.Items {
		d.rejected[seqKey{b.Instance, b.Seq(i)}] = true
	}
	return nil
}

// modelRun is what one run exercised.
type modelRun struct{ timeouts, requeues, deadLettered int }

func runLifecycleModel(t *testing.T, seed uint64, steps int) modelRun {
	rng := rand.New(rand.NewPCG(seed, 0))
	n := &simNSQ{now: time.UnixMilli(t0), bodies: map[uint64][]byte{}, inflight: map[uint64]time.Time{}}
	store := &simStore{n: n, stored: map[seqKey]int{}, pieces: map[string]bool{}}
	n.store = store
	dead := &simDead{rejected: map[seqKey]bool{}}
	n.dead = dead
	cfg := Config{Window: 5 * time.Second, Grace: 500 * time.Millisecond, MaxLateness: 1000 * time.Hour, MaxFuture: time.Hour,
		Limits: wire.Limits{Min: 1, Max: 10000}, TouchEvery: simTimeout / 3, FlushEvery: 25 * time.Millisecond}
	m := newMetrics(prometheus.NewRegistry())
	collisions := make(collisionTable, collisionTableSize)
	fresh := func() *Aggregator {
		a := newAggregator(cfg, 1, store, dead, m, logging.Discard())
		a.now = func() time.Time { return n.now }
		a.collisions = collisions
		return a
	}
	agg := fresh()
	insts := []wire.InstanceID{{1}, {2}}
	nextSeq := map[wire.InstanceID]uint64{}
	published := map[seqKey]bool{}
	var nextID uint64
	var last []byte
	publish := func(body []byte) {
		nextID++
		n.bodies[nextID] = body
		n.queue = append(n.queue, nextID)
	}
	var trace []string
	for step := 0; step < steps && len(n.errs) == 0; step++ {
		switch r := rng.IntN(100); {
		case r < 25: // a generator publishes a batch (sometimes the last one again, as a retry would)
			if last != nil && rng.IntN(8) == 0 {
				publish(last)
				trace = append(trace, "dup")
				continue
			}
			inst := insts[rng.IntN(len(insts))]
			b := wire.Batch{Instance: inst, IntervalMs: 100, FirstSeq: nextSeq[inst]}
			ev := n.now.UnixMilli() - int64(rng.IntN(8000))
			for range 1 + rng.IntN(6) {
				b.Items = append(b.Items, wire.Item{EventMs: ev, Value: 1 + uint32(rng.IntN(10000))})
				published[seqKey{inst, b.FirstSeq + uint64(len(b.Items)-1)}] = true
				ev += int64(rng.IntN(3000))
			}
			if rng.IntN(10) == 0 {
				// A last integer stamped far ahead: a piece of its own, dead-lettered.
				b.Items = append(b.Items, wire.Item{EventMs: n.now.UnixMilli() + int64(1000*time.Hour/time.Millisecond), Value: 1})
				published[seqKey{inst, b.FirstSeq + uint64(len(b.Items)-1)}] = true
			}
			nextSeq[inst] += uint64(len(b.Items))
			body, err := wire.Encode(&b)
			if err != nil {
				t.Fatal(err)
			}
			last = body
			publish(body)
			trace = append(trace, "pub")
		case r < 55:
			if len(n.queue) > 0 {
				m := n.deliver(rng)
				agg.Add(m)
				trace = append(trace, fmt.Sprintf("add %d", m.id))
			}
		case r < 85:
			n.advance(time.Duration(10+rng.IntN(300)) * time.Millisecond)
			if err := agg.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			trace = append(trace, "flush")
		case r < 93:
			store.fail = rng.IntN(2) == 0
			store.slow = rng.IntN(3) == 0
			dead.down = rng.IntN(4) == 0
			trace = append(trace, fmt.Sprintf("store fail=%v slow=%v dead-letters down=%v", store.fail, store.slow, dead.down))
		case r < 97:
			agg = fresh() // SIGKILL: what it held stays in flight until it times out
			trace = append(trace, "crash")
		default:
			agg.requeueAll() // a graceful stop
			agg = fresh()
			trace = append(trace, "stop")
		}
	}
	// Drain: a healthy store, everything delivered and flushed.
	store.fail, store.slow, dead.down = false, false, false
	for i := 0; len(n.errs) == 0 && (len(n.queue) > 0 || len(n.inflight) > 0); i++ {
		if i > 20000 {
			t.Fatalf("seed %d: not drained: %d queued, %d in flight", seed, len(n.queue), len(n.inflight))
		}
		for len(n.queue) > 0 {
			agg.Add(n.deliver(rng))
		}
		n.advance(100 * time.Millisecond)
		if err := agg.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(n.errs) > 0 {
		t.Fatalf("seed %d: %s\nlast steps: %v", seed, n.errs[0], trace[max(0, len(trace)-30):])
	}
	for k := range published {
		switch c := store.stored[k]; {
		case dead.rejected[k] && c != 0:
			t.Fatalf("seed %d: integer %x/%d dead-lettered and stored %d times", seed, k.inst[:1], k.seq, c)
		case !dead.rejected[k] && c != 1:
			t.Fatalf("seed %d: integer %x/%d stored %d times, want once", seed, k.inst[:1], k.seq, c)
		}
	}
	for k := range store.stored {
		if !published[k] {
			t.Fatalf("seed %d: stored an integer never published: %v", seed, k)
		}
	}
	return modelRun{timeouts: n.timeouts, requeues: n.requeues, deadLettered: len(dead.rejected)}
}

func TestHeldMessageLifecycleModel(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 40
	}
	var total modelRun
	for seed := range uint64(seeds) {
		r := runLifecycleModel(t, seed, 1500)
		total.timeouts += r.timeouts
		total.requeues += r.requeues
		total.deadLettered += r.deadLettered
	}
	// The interleavings that matter did happen: copies after a crash's
	// timeouts, hand-backs, dead letters.
	if total.timeouts == 0 || total.requeues == 0 || total.deadLettered == 0 {
		t.Fatalf("the model exercised too little: %+v", total)
	}
	t.Logf("%d runs: %+v", seeds, total)
}

// The case found in review: a hung store and several windows due make one
// flush pass outlast the message timeout; nsqd redelivers, and the copy
// must not be FINished while the original's integers are unstored.
func TestRedeliveredCopyWaitsForTheOriginalsWrite(t *testing.T) {
	n := &simNSQ{now: time.UnixMilli(t0), bodies: map[uint64][]byte{}, inflight: map[uint64]time.Time{}}
	store := &simStore{n: n, stored: map[seqKey]int{}, pieces: map[string]bool{}}
	n.store = store
	cfg := Config{Window: 5 * time.Second, Grace: 500 * time.Millisecond, MaxLateness: 1000 * time.Hour, MaxFuture: time.Hour,
		Limits: wire.Limits{Min: 1, Max: 10000}, TouchEvery: simTimeout / 3, FlushEvery: 25 * time.Millisecond}
	n.dead = &simDead{rejected: map[seqKey]bool{}}
	agg := newAggregator(cfg, 1, store, n.dead, newMetrics(prometheus.NewRegistry()), logging.Discard())
	agg.now = func() time.Time { return n.now }
	rng := rand.New(rand.NewPCG(1, 1))
	// One message in each of eight windows, all due.
	for w := range 8 {
		body, _ := wire.Encode(&wire.Batch{Instance: gen, IntervalMs: 100, FirstSeq: uint64(w),
			Items: []wire.Item{{EventMs: t0 + int64(w)*5000, Value: 5}}})
		n.bodies[uint64(w+1)] = body
		n.queue = append(n.queue, uint64(w+1))
	}
	for len(n.queue) > 0 {
		agg.Add(n.deliver(rng))
	}
	store.fail = true // the store is down while the windows fall due
	for range 45 {
		n.advance(time.Second)
		agg.Flush(context.Background())
	}
	if len(n.queue) > 0 {
		t.Fatalf("%d messages timed out while the store was down", len(n.queue))
	}
	store.slow = true // then hung: every write takes its whole timeout
	n.advance(5 * time.Second)
	agg.Flush(context.Background())
	for len(n.queue) > 0 {
		agg.Add(n.deliver(rng)) // copies of timed-out messages, if any
	}
	if len(n.errs) > 0 {
		t.Fatal(n.errs[0])
	}
	// The process dies now: whatever nsqd no longer holds is lost.
	lost := 0
	for id := range n.bodies {
		if _, ok := n.inflight[id]; !ok {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d messages left nsqd before their integers were stored", lost)
	}
}
