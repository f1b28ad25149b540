package averager

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/wire"
)

// heldStateTarget is what the aggregator may keep per held message beyond
// the message itself (nsqd's client holds the body anyway): a few pieces,
// nothing per integer.
const heldStateTarget = 4 << 10

// fullBatches returns n messages of wire.MaxItems integers each, one
// generator at a 1 ms interval: the load mode's largest messages.
func fullBatches(tb testing.TB, n int) []*fakeMsg {
	msgs := make([]*fakeMsg, n)
	var seq uint64
	for i := range msgs {
		b := wire.Batch{Instance: gen, IntervalMs: 1, FirstSeq: seq, Items: make([]wire.Item, wire.MaxItems)}
		for k := range b.Items {
			b.Items[k] = wire.Item{EventMs: t0 + int64(seq) + int64(k), Value: uint32(1 + (seq+uint64(k))%10000)}
		}
		seq += wire.MaxItems
		body, err := wire.Encode(&b)
		if err != nil {
			tb.Fatal(err)
		}
		msgs[i] = &fakeMsg{body: body}
	}
	return msgs
}

// heldBytesPerMessage adds msgs to a fresh aggregator whose store is down
// (so every message stays held) and returns the heap it grew by, per message.
func heldBytesPerMessage(tb testing.TB, msgs []*fakeMsg) float64 {
	store := newFakeStore()
	store.fail = errors.New("down")
	cfg := Config{Window: 5 * time.Second, Grace: 500 * time.Millisecond, MaxLateness: time.Hour, MaxFuture: 1000 * time.Hour,
		Limits: wire.Limits{Min: 1, Max: 10000}, TouchEvery: 5 * time.Second, FlushEvery: 25 * time.Millisecond}
	agg := newAggregator(cfg, 1, store, &fakeDead{}, newMetrics(prometheus.NewRegistry()), logging.Discard())
	agg.now = func() time.Time { return time.UnixMilli(t0) }
	agg.Add(msgs[0]) // warm up: scratch buffers and tables that do not grow
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, m := range msgs[1:] {
		agg.Add(m)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(agg)
	for _, m := range msgs {
		if m.finished != 0 {
			tb.Fatal("a message finished while the store was down")
		}
	}
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(msgs)-1)
}

func TestHeldStateDoesNotGrowPerInteger(t *testing.T) {
	per := heldBytesPerMessage(t, fullBatches(t, 201))
	t.Logf("%.0f bytes held per message of %d integers", per, wire.MaxItems)
	if per > heldStateTarget {
		t.Fatalf("the aggregator keeps %.0f bytes per held message of %d integers, want at most %d",
			per, wire.MaxItems, heldStateTarget)
	}
}

// BenchmarkHeldMemoryAtFullInFlight holds --max-in-flight (2500) of the
// largest messages, as the averager does while the store is down in load
// mode, and reports the aggregator's memory beyond the message bodies.
func BenchmarkHeldMemoryAtFullInFlight(b *testing.B) {
	msgs := fullBatches(b, NewOptions().MaxInFlight+1)
	var per float64
	for b.Loop() {
		for _, m := range msgs {
			m.finished, m.requed, m.touched = 0, 0, 0
		}
		per = heldBytesPerMessage(b, msgs)
	}
	b.ReportMetric(per, "B/held-msg")
	b.ReportMetric(per*float64(len(msgs)-1)/(1<<20), "MiB-at-full-in-flight")
	b.ReportMetric(float64(heldStateTarget), "target-B/held-msg")
}
