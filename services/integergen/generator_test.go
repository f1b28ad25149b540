package integergen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/wire"
)

// fixedDrawer covers slots from `from` on with value slot%100+1 (and the
// next ones, n per slot).
type fixedDrawer struct {
	from int64
	n    int
}

func (d fixedDrawer) Draw(slot int64, dst []uint32) ([]uint32, bool) {
	if slot < d.from {
		return dst, false
	}
	for i := range max(d.n, 1) {
		dst = append(dst, uint32(slot%100)+1+uint32(i))
	}
	return dst, true
}

// recorder is a Publisher that fails the first `failures` calls.
type recorder struct {
	mu       sync.Mutex
	failures int
	calls    int
	batches  []wire.Batch
}

func (r *recorder) Publish(body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.failures {
		return errors.New("nsqd unreachable")
	}
	var b wire.Batch
	if err := wire.Decode(body, wire.Limits{Min: 0, Max: 1 << 31}, &b); err != nil {
		return err
	}
	r.batches = append(r.batches, b)
	return nil
}

func (r *recorder) items() (n int, seqs []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		for i := range b.Items {
			seqs = append(seqs, b.Seq(i))
			n++
		}
	}
	return n, seqs
}

func testGenerator(o Options, d Drawer, p Publisher) (*Generator, *metrics) {
	m := newMetrics(prometheus.NewRegistry())
	return newGenerator(o, d, p, m, logging.Discard()), m
}

func TestEmitsOnePerSlotWithEventTimeAtTheSlotStart(t *testing.T) {
	o := NewOptions()
	o.Interval = 10 * time.Millisecond
	rec := &recorder{}
	g, m := testGenerator(o, fixedDrawer{}, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go g.Tick(ctx)
	g.PublishAll(ctx, time.Second)
	n, seqs := rec.items()
	if n < 10 || n > 31 {
		t.Fatalf("%d integers in 300ms of 10ms slots", n)
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("sequence %v is not 0,1,2,…", seqs)
		}
	}
	for _, b := range rec.batches {
		if b.IntervalMs != 10 {
			t.Fatalf("interval %d in the message", b.IntervalMs)
		}
		for _, it := range b.Items {
			if it.EventMs%10 != 0 || it.Value != uint32((it.EventMs/10)%100)+1 {
				t.Fatalf("item %+v: not the slot start or not the drawn value", it)
			}
		}
	}
	if got := testutil.ToFloat64(m.published); got != float64(n) {
		t.Errorf("published metric %v, want %d", got, n)
	}
}

func TestPausesWithoutALease(t *testing.T) {
	o := NewOptions()
	o.Interval = 5 * time.Millisecond
	rec := &recorder{}
	g, m := testGenerator(o, fixedDrawer{from: 1 << 62}, rec)
	g.emit(1)
	g.emit(2)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	if n, _ := rec.items(); n != 0 || testutil.ToFloat64(m.paused) != 2 {
		t.Fatalf("published %d, paused %v: want 0 and 2", n, testutil.ToFloat64(m.paused))
	}
}

func TestMarkModeEmitsFlaggedUniformValues(t *testing.T) {
	o := NewOptions()
	o.OnCoordinationLoss = OnLossMark
	o.Min, o.Max = 5, 7
	rec := &recorder{}
	g, m := testGenerator(o, fixedDrawer{from: 1 << 62}, rec)
	for s := int64(1000); s < 1300; s++ {
		g.emit(s)
	}
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	counts := map[uint32]int{}
	for _, b := range rec.batches {
		if b.Flags&wire.FlagUncoordinated == 0 {
			t.Fatal("an uncoordinated integer is not flagged")
		}
		for _, it := range b.Items {
			counts[it.Value]++
		}
	}
	if len(counts) != 3 || counts[5] < 60 || counts[6] < 60 || counts[7] < 60 {
		t.Fatalf("values %v: want 5, 6 and 7, each about 100 times", counts)
	}
	if testutil.ToFloat64(m.uncoordinated) != 300 {
		t.Errorf("uncoordinated metric %v", testutil.ToFloat64(m.uncoordinated))
	}
}

func TestRetriesUntilAcknowledged(t *testing.T) {
	o := NewOptions()
	rec := &recorder{failures: 3}
	g, m := testGenerator(o, fixedDrawer{}, rec)
	g.emit(1010)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	if n, _ := rec.items(); n != 1 {
		t.Fatalf("published %d, want 1 after 3 failures", n)
	}
	if testutil.ToFloat64(m.publishFailures) != 3 || testutil.ToFloat64(m.publishRetries) != 3 || testutil.ToFloat64(m.published) != 1 {
		t.Errorf("failures %v retries %v published %v", testutil.ToFloat64(m.publishFailures), testutil.ToFloat64(m.publishRetries), testutil.ToFloat64(m.published))
	}
}

func TestGivesUpAfterMaxPublishAgeAndSaysSo(t *testing.T) {
	o := NewOptions()
	o.MaxPublishAge = 100 * time.Millisecond
	rec := &recorder{failures: 1 << 30}
	g, m := testGenerator(o, fixedDrawer{}, rec)
	g.emit(1010)
	close(g.queue)
	g.PublishAll(context.Background(), time.Minute)
	if testutil.ToFloat64(m.published) != 0 || testutil.ToFloat64(m.notPublished.WithLabelValues(reasonUnacknowledged)) != 1 {
		t.Fatalf("published %v, not published %v: an unacknowledged integer must be counted as not published",
			testutil.ToFloat64(m.published), testutil.ToFloat64(m.notPublished.WithLabelValues(reasonUnacknowledged)))
	}
}

func TestBatchesHoldConsecutiveSequencesOnly(t *testing.T) {
	o := NewOptions()
	o.QueueSize = 3
	o.BatchMax = 10
	rec := &recorder{}
	g, m := testGenerator(o, fixedDrawer{}, rec)
	for s := int64(1000); s < 1005; s++ { // seqs 3 and 4 do not fit the queue
		g.emit(s)
	}
	if testutil.ToFloat64(m.notPublished.WithLabelValues(reasonQueueFull)) != 2 {
		t.Errorf("queue_full = %v, want 2", testutil.ToFloat64(m.notPublished.WithLabelValues(reasonQueueFull)))
	}
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	_, seqs := rec.items()
	if len(seqs) != 3 || seqs[0] != 0 || seqs[2] != 2 {
		t.Fatalf("published seqs %v, want 0 1 2", seqs)
	}
}

func TestBatchesSplitAtGaps(t *testing.T) {
	o := NewOptions()
	o.BatchMax = 10
	rec := &recorder{}
	g, _ := testGenerator(o, fixedDrawer{}, rec)
	g.emit(1000)
	g.emit(1001)
	g.seq = 7
	g.emit(1002)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	if len(rec.batches) != 2 || rec.batches[0].FirstSeq != 0 || len(rec.batches[0].Items) != 2 || rec.batches[1].FirstSeq != 7 {
		t.Fatalf("batches %+v", rec.batches)
	}
}

func TestBatchWaitGathersIntegers(t *testing.T) {
	o := NewOptions()
	o.Interval = time.Millisecond
	o.BatchWait = 50 * time.Millisecond
	rec := &recorder{}
	g, _ := testGenerator(o, fixedDrawer{}, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go g.Tick(ctx)
	g.PublishAll(ctx, time.Second)
	n, seqs := rec.items()
	if len(rec.batches) == 0 || n/len(rec.batches) < 10 {
		t.Fatalf("%d integers in %d batches: want batches of tens at 1ms slots and 50ms wait", n, len(rec.batches))
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("sequence broken at %d: %v", i, seqs[max(0, i-3):i+1])
		}
	}
}

func TestSeveralPerSlotShareTheSlotAndFollowTheSequence(t *testing.T) {
	o := NewOptions()
	o.PerSlot = 5
	rec := &recorder{}
	g, m := testGenerator(o, fixedDrawer{n: 5}, rec)
	g.emit(1000)
	g.emit(1001)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	n, seqs := rec.items()
	if n != 10 || seqs[9] != 9 || testutil.ToFloat64(m.generated) != 10 {
		t.Fatalf("%d integers, seqs %v", n, seqs)
	}
	for _, b := range rec.batches {
		for i, it := range b.Items {
			if slot := it.EventMs / 100; it.Value != uint32(slot%100)+1+uint32((b.Seq(i))%5) {
				t.Fatalf("seq %d: value %d event %d", b.Seq(i), it.Value, it.EventMs)
			}
		}
	}
}

// Integers given up leave a gap in the sequence numbers; the next batch
// published says how many, so the averager stops waiting for them.
func TestTheNextBatchSaysWhatWasGivenUp(t *testing.T) {
	o := NewOptions()
	o.QueueSize = 2
	o.BatchMax = 10
	o.MaxPublishAge = 50 * time.Millisecond
	rec := &recorder{failures: 1 << 30}
	g, _ := testGenerator(o, fixedDrawer{n: 1}, rec)
	g.emit(1000) // seq 0: its publish fails until it is given up
	close(g.queue)
	g.PublishAll(context.Background(), time.Second) // gives seq 0 up
	rec.failures = 0
	g2 := g
	g2.queue = make(chan chunk, 4)
	g2.emit(1001) // seq 1
	g2.emit(1002) // seq 2
	g2.emit(1003) // seq 3: does not fit the queue
	close(g2.queue)
	g2.PublishAll(context.Background(), time.Second)
	g2.queue = make(chan chunk, 4)
	g2.emit(1004) // seq 4
	close(g2.queue)
	g2.PublishAll(context.Background(), time.Second)
	if len(rec.batches) != 2 {
		t.Fatalf("%d batches, want 2: %+v", len(rec.batches), rec.batches)
	}
	if b := rec.batches[0]; b.FirstSeq != 1 || len(b.Items) != 2 || b.GivenUp != 1 {
		t.Errorf("first batch: first seq %d, %d items, given up %d; want 1, 2, 1 (seq 0 given up)", b.FirstSeq, len(b.Items), b.GivenUp)
	}
	if b := rec.batches[1]; b.FirstSeq != 4 || b.GivenUp != 1 {
		t.Errorf("second batch: first seq %d, given up %d; want 4, 1 (seq 3 did not fit the queue)", b.FirstSeq, b.GivenUp)
	}
}

// A slot's integers are queued together and split across batches at
// --batch-max without a gap.
func TestASlotSplitsAcrossBatches(t *testing.T) {
	o := NewOptions()
	o.BatchMax = 3
	o.PerSlot = 5
	rec := &recorder{}
	g, _ := testGenerator(o, fixedDrawer{n: 5}, rec)
	g.emit(1000)
	g.emit(1001)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	n, seqs := rec.items()
	if n != 10 || len(rec.batches) != 4 {
		t.Fatalf("%d integers in %d batches, want 10 in 4", n, len(rec.batches))
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("seqs %v", seqs)
		}
	}
	for i, b := range rec.batches {
		if b.GivenUp != 0 {
			t.Fatalf("batch at %d says %d given up", b.FirstSeq, b.GivenUp)
		}
		// Only the last batch ends with the whole of a slot.
		if got, want := b.Flags&wire.FlagSlotEnd != 0, i == len(rec.batches)-1; got != want {
			t.Errorf("batch at %d: slot-end flag %v, want %v", b.FirstSeq, got, want)
		}
	}
}

func TestABatchEndingWithAWholeSlotSaysSo(t *testing.T) {
	o := NewOptions()
	o.BatchMax = 10
	o.PerSlot = 2
	rec := &recorder{}
	g, _ := testGenerator(o, fixedDrawer{n: 2}, rec)
	g.emit(1000)
	g.emit(1001)
	close(g.queue)
	g.PublishAll(context.Background(), time.Second)
	if len(rec.batches) != 1 || len(rec.batches[0].Items) != 4 || rec.batches[0].Flags&wire.FlagSlotEnd == 0 {
		t.Fatalf("batches %+v: want one of 4 integers flagged slot-end", rec.batches)
	}
}
