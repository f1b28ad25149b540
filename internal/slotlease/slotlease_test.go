package slotlease

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

func opts(instance string) Options {
	return Options{Prefix: "test/gen", Instance: instance, Interval: 10 * time.Millisecond, Min: 1, Max: 10000,
		MaxGenerators: 4, LeaseAhead: 200 * time.Millisecond, SessionTTL: 10 * time.Second}
}

// start runs a coordinator; stop ends it (once) and returns Run's error,
// and done is closed when Run returns by itself or after stop.
func start(t *testing.T, c *testenv.Consul, o Options) (coord *Coordinator, stop func() error, done <-chan struct{}) {
	coord = New(c.Client, o, logging.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var err error
	go func() {
		err = coord.Run(ctx)
		close(finished)
	}()
	stop = func() error {
		cancel()
		<-finished
		return err
	}
	t.Cleanup(func() { stop() })
	return coord, stop, finished
}

func held(c *Coordinator) bool { i, _ := c.State(); return i >= 0 }

func TestDistinctIndicesAndDistinctValues(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	var coords []*Coordinator
	for _, name := range []string{"a", "b", "c"} {
		co, _, _ := start(t, c, opts(name))
		coords = append(coords, co)
	}
	testenv.Eventually(t, 10*time.Second, "every coordinator to hold an index", func() bool {
		for _, co := range coords {
			if !held(co) {
				return false
			}
		}
		return true
	})
	indices := map[int]bool{}
	for _, co := range coords {
		i, _ := co.State()
		indices[i] = true
	}
	if len(indices) != 3 {
		t.Fatalf("indices %v: not distinct", indices)
	}
	// Every slot the three can all emit holds three distinct values. A new
	// group starts one lease (20 slots) ahead; begin beyond that.
	slot := coords[0].Slot(time.Now()) + 50
	checked := 0
	testenv.Eventually(t, 5*time.Second, "100 slots covered by all three leases", func() bool {
		for ; checked < 100; slot++ {
			vals := map[uint32]bool{}
			for _, co := range coords {
				v, ok := co.Draw(slot, nil)
				if !ok {
					return false
				}
				if len(v) != 1 || v[0] < 1 || v[0] > 10000 {
					t.Fatalf("values %v: want one in range", v)
				}
				vals[v[0]] = true
			}
			if len(vals) != 3 {
				t.Fatalf("slot %d: values collide: %v", slot, vals)
			}
			checked++
		}
		return true
	})
	if coords[0].Stats().RoundTrips == 0 || coords[0].Stats().Extends == 0 {
		t.Errorf("stats not counted: %+v", coords[0].Stats())
	}
}

// A successor of an index never emits a slot its predecessor may have.
func TestHandoverStartsAfterThePredecessorsHighWater(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	o := opts("first")
	o.MaxGenerators = 1
	// The first holder's clock runs 5 s ahead of the second's.
	ahead := func() time.Time { return time.Now().Add(5 * time.Second) }
	o.Now = ahead
	first, stopFirst, _ := start(t, c, o)
	testenv.Eventually(t, 10*time.Second, "the first to hold the only index", func() bool { return held(first) })
	var firstHW int64
	testenv.Eventually(t, 5*time.Second, "a lease beyond the start", func() bool { _, firstHW = first.State(); return firstHW > first.Slot(ahead()) })
	stopFirst()
	pair, _, err := c.Client.KV().Get("test/gen/index/0", nil)
	if err != nil || pair == nil || pair.Session != "" {
		t.Fatalf("index not released: %+v %v", pair, err)
	}

	o2 := opts("second") // its clock is right
	o2.MaxGenerators = 1
	second, _, _ := start(t, c, o2)
	testenv.Eventually(t, 10*time.Second, "the second to hold the index", func() bool { return held(second) })
	now := second.Slot(time.Now())
	// Slots the first could have emitted are refused, even though the
	// second's clock says they are now.
	if _, ok := second.Draw(now, nil); ok {
		t.Fatalf("the second may emit slot %d, but the first leased up to at least %d", now, firstHW)
	}
	testenv.Eventually(t, 15*time.Second, "the second to emit after the first's lease", func() bool {
		_, ok := second.Draw(second.Slot(time.Now()), nil)
		return ok
	})
}

func TestFlagsThatDisagreeWithTheGroupAreRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	first, _, _ := start(t, c, opts("a"))
	testenv.Eventually(t, 10*time.Second, "the first to hold an index", func() bool { return held(first) })
	o := opts("b")
	o.Max = 500
	_, stop, done := start(t, c, o)
	select {
	case <-done:
		var mm *MismatchError
		if err := stop(); !errors.As(err, &mm) {
			t.Fatalf("Run returned %v, want a MismatchError", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a generator with other --max kept running")
	}
}

func TestAllIndicesTakenPauses(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	o := opts("a")
	o.MaxGenerators = 1
	a, stopA, _ := start(t, c, o)
	testenv.Eventually(t, 10*time.Second, "a to hold the only index", func() bool { return held(a) })
	o.Instance = "b"
	b, _, _ := start(t, c, o)
	time.Sleep(500 * time.Millisecond) // b must not get an index while a holds it; there is no event to wait for
	if held(b) {
		t.Fatal("two generators hold the only index")
	}
	stopA()
	testenv.Eventually(t, 10*time.Second, "b to take the index a released", func() bool { return held(b) })
}

// BenchmarkCostPerValue measures what coordination costs one value: the
// local draw (ns/op) and the Consul round trips per value at a 1 ms slot
// (round-trips/value), with a real Consul agent.
func BenchmarkCostPerValue(b *testing.B) {
	c := testenv.StartConsul(b)
	o := opts("bench")
	o.Interval = time.Millisecond
	o.LeaseAhead = 500 * time.Millisecond
	coord := New(c.Client, o, logging.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go coord.Run(ctx)
	testenv.Eventually(b, 10*time.Second, "a lease", func() bool { _, ok := coord.Draw(coord.Slot(time.Now()), nil); return ok })
	before, began := coord.Stats().RoundTrips, time.Now()
	b.ResetTimer()
	var dst []uint32
	for i := 0; b.Loop(); i++ {
		dst, _ = coord.Draw(coord.Slot(time.Now()), dst[:0])
	}
	b.StopTimer()
	// One value per slot: the values a generator emitted in this time.
	time.Sleep(time.Second) // let at least a few lease extensions happen at a short b.N
	values := float64(time.Since(began) / o.Interval)
	b.ReportMetric(float64(coord.Stats().RoundTrips-before)/values, "round-trips/value")
}

// In the load mode each generator takes its own run of positions: every
// value of a slot, across generators, is distinct.
func TestSeveralPerSlotStayDistinct(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	var coords []*Coordinator
	for _, name := range []string{"a", "b", "c"} {
		o := opts(name)
		o.PerSlot = 300
		co, _, _ := start(t, c, o)
		coords = append(coords, co)
	}
	slot := coords[0].Slot(time.Now()) + 50
	testenv.Eventually(t, 10*time.Second, "three leases covering ten slots", func() bool {
		for _, co := range coords {
			if _, ok := co.Draw(slot+9, nil); !ok {
				return false
			}
		}
		return true
	})
	for s := slot; s < slot+10; s++ {
		seen := map[uint32]bool{}
		for _, co := range coords {
			vals, ok := co.Draw(s, nil)
			if !ok || len(vals) != 300 {
				t.Fatalf("slot %d: %d values (%v)", s, len(vals), ok)
			}
			for _, v := range vals {
				if seen[v] {
					t.Fatalf("slot %d: value %d twice", s, v)
				}
				seen[v] = true
			}
		}
	}
}

// After a lease is lost, a generator that held its index again starts its
// back-off over: only failures in a row lengthen the pause.
func TestBackoffStartsOverAfterALeaseWasHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	co, _, _ := start(t, c, opts("a"))
	session := func() string {
		i, _ := co.State()
		if i < 0 {
			return ""
		}
		pair, _, err := c.Client.KV().Get(fmt.Sprintf("test/gen/index/%d", i), nil)
		if err != nil || pair == nil {
			return ""
		}
		return pair.Session
	}
	var pause time.Duration
	for loss := 1; loss <= 6; loss++ {
		var sid string
		testenv.Eventually(t, 30*time.Second, "an index held with a lease extended", func() bool {
			sid = session()
			return sid != "" && co.Stats().Extends > 0
		})
		before := co.Stats().Extends
		testenv.Eventually(t, 10*time.Second, "a lease extension", func() bool { return co.Stats().Extends > before })
		// What the agent does when the generator's check fails for a moment.
		if _, err := c.Client.Session().Destroy(sid, nil); err != nil {
			t.Fatal(err)
		}
		lost := time.Now()
		testenv.Eventually(t, 30*time.Second, "the index held again", func() bool { s := session(); return s != "" && s != sid })
		pause = time.Since(lost)
	}
	// At 250 ms doubling, a back-off never reset would be at its 5 s cap by now.
	if pause > 3*time.Second {
		t.Fatalf("the sixth lease loss paused the generator for %s: the back-off did not start over", pause.Round(10*time.Millisecond))
	}
}
