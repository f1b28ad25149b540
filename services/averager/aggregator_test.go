package averager

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/wire"
)

type fakeMsg struct {
	body                      []byte
	finished, touched, requed int
}

func (m *fakeMsg) Body() []byte          { return m.body }
func (m *fakeMsg) Finish()               { m.finished++ }
func (m *fakeMsg) Touch()                { m.touched++ }
func (m *fakeMsg) Requeue(time.Duration) { m.requed++ }
func (m *fakeMsg) done() bool            { return m.finished == 1 && m.requed == 0 }
func (m *fakeMsg) untouchedByAck() bool  { return m.finished == 0 && m.requed == 0 }
func (m *fakeMsg) String() string        { return fmt.Sprintf("fin=%d req=%d", m.finished, m.requed) }

// fakeStore merges pieces the way integer-api does, by sequence ranges.
type fakeStore struct {
	fail    error
	windows map[int64]*windowapi.WriteResult
	seen    map[string]bool
	fence   uint64
	puts    int
}

func newFakeStore() *fakeStore {
	return &fakeStore{windows: map[int64]*windowapi.WriteResult{}, seen: map[string]bool{}}
}

func (s *fakeStore) Put(_ context.Context, start time.Time, w windowapi.Write) (windowapi.WriteResult, error) {
	s.puts++
	if s.fail != nil {
		return windowapi.WriteResult{}, s.fail
	}
	if w.Fence < s.fence {
		return windowapi.WriteResult{}, windowapi.ErrStaleFence
	}
	s.fence = w.Fence
	win := s.windows[start.UnixMilli()]
	res := windowapi.WriteResult{}
	if win == nil {
		win = &windowapi.WriteResult{}
		win.Start, win.End = start, w.End
		res.Created = true
	}
	for _, p := range w.Pieces {
		key := fmt.Sprintf("%s/%d-%d", p.Instance, p.FirstSeq, p.LastSeq)
		if s.seen[key] {
			res.Pieces = append(res.Pieces, windowapi.Duplicate)
			continue
		}
		s.seen[key] = true
		win.Count += p.Count
		win.Sum += p.Sum
		res.Pieces = append(res.Pieces, windowapi.Added)
	}
	if !res.Created {
		win.Amendments++
	}
	s.windows[start.UnixMilli()] = win
	res.Window = win.Window
	return res, nil
}

type fakeDead struct {
	fail    error
	reasons []string
}

func (d *fakeDead) Reject(reason, _ string, _ []byte) error {
	if d.fail != nil {
		return d.fail
	}
	d.reasons = append(d.reasons, reason)
	return nil
}

const t0 = int64(1_800_000_000_000) // a window boundary (divisible by 5000)

type rig struct {
	agg   *Aggregator
	store *fakeStore
	dead  *fakeDead
	now   time.Time
	m     *metrics
}

func newRig(t *testing.T) *rig {
	r := &rig{store: newFakeStore(), dead: &fakeDead{}, now: time.UnixMilli(t0)}
	cfg := Config{Window: 5 * time.Second, Grace: 500 * time.Millisecond, MaxLateness: time.Minute, MaxFuture: time.Minute,
		Limits: wire.Limits{Min: 1, Max: 10000}, TouchEvery: 20 * time.Second, FlushEvery: 100 * time.Millisecond}
	r.m = newMetrics(prometheus.NewRegistry())
	r.agg = newAggregator(cfg, 7, r.store, r.dead, r.m, logging.Discard())
	r.agg.now = func() time.Time { return r.now }
	return r
}

var gen = wire.InstanceID{1, 2, 3}

func msg(t *testing.T, first uint64, items ...wire.Item) *fakeMsg {
	t.Helper()
	body, err := wire.Encode(&wire.Batch{Instance: gen, IntervalMs: 100, FirstSeq: first, Items: items})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{body: body}
}

func at(offsetMs int64, v uint32) wire.Item { return wire.Item{EventMs: t0 + offsetMs, Value: v} }

func (r *rig) advance(t *testing.T, d time.Duration) {
	t.Helper()
	r.now = r.now.Add(d)
	if err := r.agg.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestWindowIsWrittenAfterGraceAndMessagesFinishedOnlyThen(t *testing.T) {
	r := newRig(t)
	a, b := msg(t, 0, at(0, 1)), msg(t, 1, at(4999, 4))
	r.agg.Add(a)
	r.agg.Add(b)
	r.advance(t, 5400*time.Millisecond) // window ends at +5000, grace until +5500
	if r.store.puts != 0 || !a.untouchedByAck() {
		t.Fatalf("written before the grace ended: puts=%d a=%v", r.store.puts, a)
	}
	r.advance(t, 100*time.Millisecond)
	w := r.store.windows[t0]
	if w == nil || w.Count != 2 || w.Sum != 5 {
		t.Fatalf("window %+v, want count 2 sum 5", w)
	}
	if !a.done() || !b.done() {
		t.Fatalf("messages not finished once stored: a=%v b=%v", a, b)
	}
}

func TestBoundaryItemsGoToTheirOwnWindows(t *testing.T) {
	r := newRig(t)
	// one batch across the boundary at +5000: two pieces, one message
	m := msg(t, 10, at(4900, 10), at(5000, 20), at(5100, 30))
	r.agg.Add(m)
	r.advance(t, 5500*time.Millisecond)
	if w := r.store.windows[t0]; w == nil || w.Count != 1 || w.Sum != 10 {
		t.Fatalf("first window %+v", w)
	}
	if m.finished != 0 {
		t.Fatal("finished while its second window was not stored")
	}
	r.advance(t, 5*time.Second)
	if w := r.store.windows[t0+5000]; w == nil || w.Count != 2 || w.Sum != 50 {
		t.Fatalf("second window %+v", w)
	}
	if !m.done() {
		t.Fatalf("not finished after both windows: %v", m)
	}
}

func TestRedeliveryAndDuplicatesCountOnce(t *testing.T) {
	r := newRig(t)
	a := msg(t, 0, at(100, 7))
	dup := msg(t, 0, at(100, 7)) // the same message published twice
	r.agg.Add(a)
	r.agg.Add(dup)
	if !dup.untouchedByAck() {
		t.Fatalf("a copy finished before its integers were stored: %v", dup)
	}
	r.advance(t, 6*time.Second)
	if !a.done() || !dup.done() {
		t.Fatalf("original %v and copy %v not finished once stored", a, dup)
	}
	// redelivered after the write (a FIN that nsqd never got)
	again := msg(t, 0, at(100, 7))
	r.agg.Add(again)
	r.advance(t, 200*time.Millisecond)
	if w := r.store.windows[t0]; w.Count != 1 || w.Sum != 7 {
		t.Fatalf("window %+v, want counted once", w)
	}
	if !again.done() {
		t.Fatalf("redelivery not finished: %v", again)
	}
	if got := testutil.ToFloat64(r.m.deduplicated); got != 2 {
		t.Errorf("deduplicated = %v, want 2", got)
	}
}

func TestLateIntegersAmendTheStoredWindow(t *testing.T) {
	r := newRig(t)
	r.agg.Add(msg(t, 0, at(100, 10)))
	r.advance(t, 6*time.Second)
	late := msg(t, 1, at(200, 30))
	r.agg.Add(late)
	r.advance(t, 100*time.Millisecond)
	w := r.store.windows[t0]
	if w.Count != 2 || w.Sum != 40 || w.Amendments != 1 {
		t.Fatalf("window %+v, want amended once to count 2 sum 40", w)
	}
	if !late.done() || testutil.ToFloat64(r.m.late) != 1 || testutil.ToFloat64(r.m.windowsAmended) != 1 {
		t.Fatalf("late=%v late metric=%v amended=%v", late, testutil.ToFloat64(r.m.late), testutil.ToFloat64(r.m.windowsAmended))
	}
}

func TestTooLateIsDeadLetteredNotDropped(t *testing.T) {
	r := newRig(t)
	r.now = time.UnixMilli(t0 + 5000 + int64(2*time.Minute/time.Millisecond))
	m := msg(t, 0, at(100, 10))
	r.agg.Add(m)
	if !m.done() || len(r.dead.reasons) != 1 || r.dead.reasons[0] != "too_late" {
		t.Fatalf("msg %v dead letters %v", m, r.dead.reasons)
	}
}

func TestMalformedMessagesAreDeadLetteredAndFinished(t *testing.T) {
	r := newRig(t)
	for _, body := range [][]byte{[]byte("junk"), nil, {9, 9, 9}} {
		m := &fakeMsg{body: body}
		r.agg.Add(m)
		if !m.done() {
			t.Fatalf("%q: %v", body, m)
		}
	}
	if len(r.dead.reasons) != 3 {
		t.Fatalf("dead letters %v", r.dead.reasons)
	}
	if got := testutil.ToFloat64(r.m.rejected.WithLabelValues(string(wire.ReasonVersion))); got != 2 {
		t.Errorf("rejected{unknown_version} = %v, want 2", got)
	}
}

func TestDeadLetterOutageRequeuesInsteadOfLosing(t *testing.T) {
	r := newRig(t)
	r.dead.fail = errors.New("nsqd down")
	m := &fakeMsg{body: []byte("junk")}
	r.agg.Add(m)
	if m.finished != 0 || m.requed != 1 {
		t.Fatalf("%v: want requeued, not finished", m)
	}
}

func TestStoreOutageKeepsMessagesAndRetries(t *testing.T) {
	r := newRig(t)
	m := msg(t, 0, at(100, 10))
	r.agg.Add(m)
	r.store.fail = errors.New("connection refused")
	r.advance(t, 6*time.Second)
	if m.finished != 0 || m.requed != 0 {
		t.Fatalf("%v: acknowledged while the store was down", m)
	}
	r.store.fail = nil
	r.advance(t, 10*time.Second)
	if !m.done() || r.store.windows[t0].Count != 1 {
		t.Fatalf("%v after the store came back", m)
	}
	if testutil.ToFloat64(r.m.storeErrors) < 1 {
		t.Error("store errors not counted")
	}
}

func TestHeldMessagesAreTouched(t *testing.T) {
	r := newRig(t)
	m := msg(t, 0, at(100, 10))
	r.agg.Add(m)
	r.store.fail = errors.New("down")
	for i := 0; i < 30; i++ {
		r.advance(t, time.Second)
	}
	if m.touched == 0 {
		t.Fatal("a message held 30s was never touched (nsqd would time it out)")
	}
}

func TestStaleFenceEndsTheTermAndRequeues(t *testing.T) {
	r := newRig(t)
	r.store.fence = 8 // a newer leader wrote
	m := msg(t, 0, at(100, 10))
	in := make(chan Message, 1)
	in <- m
	r.agg.cfg.FlushEvery = time.Millisecond
	r.now = time.UnixMilli(t0 + 6000)
	err := r.agg.Run(context.Background(), in)
	if !errors.Is(err, windowapi.ErrStaleFence) {
		t.Fatalf("Run returned %v, want the stale fence", err)
	}
	if m.finished != 0 || m.requed != 1 {
		t.Fatalf("%v: want requeued for the new leader", m)
	}
}

func TestFutureIntegersAreDeadLettered(t *testing.T) {
	r := newRig(t)
	m := msg(t, 0, at(int64(2*time.Hour/time.Millisecond), 10))
	r.agg.Add(m)
	if !m.done() || len(r.dead.reasons) != 1 || r.dead.reasons[0] != "future" {
		t.Fatalf("%v %v", m, r.dead.reasons)
	}
}

func TestCollisionsAreCounted(t *testing.T) {
	r := newRig(t)
	other := wire.InstanceID{9}
	body, _ := wire.Encode(&wire.Batch{Instance: other, IntervalMs: 100, FirstSeq: 0, Items: []wire.Item{at(100, 42), at(200, 43)}})
	r.agg.Add(msg(t, 0, at(100, 42), at(200, 7)))
	r.agg.Add(&fakeMsg{body: body})
	r.agg.Add(msg(t, 0, at(100, 42))) // a duplicate of the first: not a collision
	if got := testutil.ToFloat64(r.m.collisions); got != 1 {
		t.Fatalf("collisions = %v, want 1", got)
	}
}
