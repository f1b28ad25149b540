package averager

import (
	"encoding/hex"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/wire"
)

type fakeLive struct {
	ids   []wire.InstanceID
	known bool
}

func (f *fakeLive) Live() (map[wire.InstanceID]struct{}, bool) {
	if !f.known {
		return nil, false
	}
	m := map[wire.InstanceID]struct{}{}
	for _, id := range f.ids {
		m[id] = struct{}{}
	}
	return m, true
}

var genB = wire.InstanceID{9, 9, 9}

func msgOf(t *testing.T, id wire.InstanceID, first uint64, givenUp uint32, items ...wire.Item) *fakeMsg {
	t.Helper()
	body, err := wire.Encode(&wire.Batch{Instance: id, IntervalMs: 100, FirstSeq: first, GivenUp: givenUp, Items: items})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{body: body}
}

func watermarkRig(t *testing.T, live ...wire.InstanceID) (*rig, *fakeLive) {
	r := newRig(t)
	l := &fakeLive{ids: live, known: true}
	r.agg.cfg.Live = l
	return r, l
}

// The window [t0, t0+5000) from the point of view of two generators that
// were already running before it.
func TestWindowIsWrittenOnceEveryLiveGeneratorPassedItsEnd(t *testing.T) {
	r, _ := watermarkRig(t, gen, genB)
	a0, b0 := msgOf(t, gen, 0, 0, at(-100, 1)), msgOf(t, genB, 0, 0, at(-100, 2))
	a1, b1 := msgOf(t, gen, 1, 0, at(2000, 3)), msgOf(t, genB, 1, 0, at(2000, 4))
	for _, m := range []*fakeMsg{a0, b0, a1, b1} {
		r.agg.Add(m)
	}
	r.advance(t, 5010*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written before any generator passed its end")
	}
	r.agg.Add(msgOf(t, gen, 2, 0, at(5000, 5)))
	r.advance(t, 0)
	if r.store.windows[t0] != nil {
		t.Fatal("written while a live generator had not passed its end")
	}
	r.agg.Add(msgOf(t, genB, 2, 0, at(5000, 6)))
	r.advance(t, 0)
	if w := r.store.windows[t0]; w == nil || w.Count != 2 || w.Sum != 7 {
		t.Fatalf("window %+v, want written at once with count 2 sum 7 (well before its grace)", w)
	}
	if !a1.done() || !b1.done() {
		t.Fatalf("messages not finished once stored: %v %v", a1, b1)
	}
	if got := testutil.ToFloat64(r.m.windowsEarly); got < 1 {
		t.Errorf("windows_written_by_watermark_total = %v", got)
	}
}

func TestAGapHoldsTheWindowUntilFilledOrGivenUp(t *testing.T) {
	for _, fill := range []string{"filled", "given up"} {
		t.Run(fill, func(t *testing.T) {
			r, _ := watermarkRig(t, gen)
			r.agg.Add(msgOf(t, gen, 0, 0, at(-100, 1)))
			r.agg.Add(msgOf(t, gen, 1, 0, at(1000, 2)))
			// seq 2 is missing: it could be in the window
			r.agg.Add(msgOf(t, gen, 3, 0, at(5100, 3)))
			r.advance(t, 5200*time.Millisecond)
			if r.store.windows[t0] != nil {
				t.Fatal("written over a gap in the sequence numbers")
			}
			if fill == "filled" {
				r.agg.Add(msgOf(t, gen, 2, 0, at(4000, 4)))
			} else {
				r.agg.Add(msgOf(t, gen, 4, 2, at(5200, 5))) // seqs 2 and 3 given up (3 came anyway)
			}
			r.advance(t, 0)
			w := r.store.windows[t0]
			if w == nil {
				t.Fatal("not written once the gap was closed")
			}
			if want := map[string]int64{"filled": 2, "given up": 1}[fill]; w.Count != want {
				t.Fatalf("count %d, want %d", w.Count, want)
			}
		})
	}
}

// The first message seen of a generator at +100 says nothing about its
// earlier sequence numbers, which may be in [t0, t0+100].
func TestAStreamSeenMidWindowDoesNotCloseIt(t *testing.T) {
	r, _ := watermarkRig(t, gen)
	r.agg.Add(msgOf(t, gen, 10, 0, at(100, 1)))
	r.agg.Add(msgOf(t, gen, 11, 0, at(5000, 1)))
	r.advance(t, 5100*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written though earlier sequence numbers may hold integers of the window")
	}
	r.advance(t, 400*time.Millisecond) // the grace is the upper bound
	if r.store.windows[t0] == nil {
		t.Fatal("not written at the end of the grace")
	}
}

// A generator that stopped (not live) holds nothing back; what it left
// behind amends the window exactly once.
func TestAStoppedGeneratorHoldsNothingBackAndItsLateIntegersAmendOnce(t *testing.T) {
	r, live := watermarkRig(t, gen, genB)
	r.agg.Add(msgOf(t, gen, 0, 0, at(-100, 1)))
	r.agg.Add(msgOf(t, genB, 0, 0, at(-100, 1)))
	r.agg.Add(msgOf(t, gen, 1, 0, at(1000, 2)))
	r.agg.Add(msgOf(t, gen, 2, 0, at(5000, 3)))
	r.advance(t, 5010*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written while genB, live, had not passed the window")
	}
	live.ids = []wire.InstanceID{gen} // genB's lease is released
	r.advance(t, 25*time.Millisecond)
	if w := r.store.windows[t0]; w == nil || w.Count != 1 {
		t.Fatalf("window %+v, want written once genB stopped, count 1", w)
	}
	late := msgOf(t, genB, 1, 0, at(3000, 10))
	r.agg.Add(late)
	r.agg.Add(msgOf(t, genB, 1, 0, at(3000, 10))) // and a copy
	r.advance(t, 25*time.Millisecond)
	r.advance(t, time.Second)
	if w := r.store.windows[t0]; w.Count != 2 || w.Sum != 12 || w.Amendments != 1 {
		t.Fatalf("window %+v, want count 2 sum 12 after one amendment", w)
	}
	if !late.done() {
		t.Fatalf("late message not finished: %v", late)
	}
}

func TestUnknownLiveGeneratorsWaitForTheGrace(t *testing.T) {
	r, live := watermarkRig(t, gen)
	live.known = false
	r.agg.Add(msgOf(t, gen, 0, 0, at(-100, 1)))
	r.agg.Add(msgOf(t, gen, 1, 0, at(100, 1)))
	r.agg.Add(msgOf(t, gen, 2, 0, at(5000, 1)))
	r.advance(t, 5400*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written early without knowing who is live")
	}
	r.advance(t, 100*time.Millisecond)
	if r.store.windows[t0] == nil {
		t.Fatal("not written at the end of the grace")
	}
}

func TestStreamRunsMerge(t *testing.T) {
	var s stream
	s.add(seqRun{first: 10, last: 19, firstMs: 100, throughMs: 190}, 1000)
	s.add(seqRun{first: 30, last: 39, firstMs: 300, throughMs: 390}, 1000)
	s.add(seqRun{first: 0, last: 4, firstMs: 0, throughMs: 40}, 1000)
	if len(s.runs) != 3 {
		t.Fatalf("runs %+v", s.runs)
	}
	span := window.Span{StartMs: 50, EndMs: 300}
	if s.passed(span) {
		t.Fatal("passed over gaps")
	}
	s.add(seqRun{first: 5, last: 9, firstMs: 50, throughMs: 90}, 1000)
	s.add(seqRun{first: 20, last: 29, firstMs: 200, throughMs: 290}, 1000)
	if len(s.runs) != 1 || s.runs[0] != (seqRun{first: 0, last: 39, firstMs: 0, throughMs: 390}) {
		t.Fatalf("runs %+v, want one 0..39", s.runs)
	}
	if !s.passed(span) {
		t.Fatal("not passed once the gaps filled")
	}
}

// No live generator at all (every one stopped, or a prefix that names no
// group): the grace decides, rather than a write per arriving message.
func TestNoLiveGeneratorWaitsForTheGrace(t *testing.T) {
	r, _ := watermarkRig(t)
	r.agg.Add(msgOf(t, gen, 0, 0, at(-100, 1)))
	r.agg.Add(msgOf(t, gen, 1, 0, at(100, 1)))
	r.agg.Add(msgOf(t, gen, 2, 0, at(5000, 1)))
	r.advance(t, 5400*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written early with no live generator")
	}
	r.advance(t, 100*time.Millisecond)
	if r.store.windows[t0] == nil {
		t.Fatal("not written at the end of the grace")
	}
}

func msgFlags(t *testing.T, id wire.InstanceID, first uint64, flags uint8, items ...wire.Item) *fakeMsg {
	t.Helper()
	body, err := wire.Encode(&wire.Batch{Flags: flags, Instance: id, IntervalMs: 100, FirstSeq: first, Items: items})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{body: body}
}

// A generator that says its window's last slot is done has passed the
// window: it is written without waiting for the next slot, even before
// its end on this clock. Without the flag the last slot may hold more.
func TestAWindowsLastSlotDoneClosesIt(t *testing.T) {
	r, _ := watermarkRig(t, gen, genB)
	r.agg.Add(msgFlags(t, gen, 0, wire.FlagSlotEnd, at(-100, 1)))
	r.agg.Add(msgFlags(t, genB, 0, wire.FlagSlotEnd, at(-100, 1)))
	r.agg.Add(msgFlags(t, gen, 1, wire.FlagSlotEnd, at(4900, 2)))
	r.agg.Add(msgFlags(t, genB, 1, 0, at(4900, 3))) // more of slot +4900 may follow
	r.advance(t, 4950*time.Millisecond)
	if r.store.windows[t0] != nil {
		t.Fatal("written while genB's last slot of the window was not done")
	}
	r.agg.Add(msgFlags(t, genB, 2, wire.FlagSlotEnd, at(4900, 4)))
	r.advance(t, 0)
	if w := r.store.windows[t0]; w == nil || w.Count != 3 || w.Sum != 9 {
		t.Fatalf("window %+v, want written with count 3 sum 9 once both generators finished its last slot", w)
	}
}

// The live set counts locked index keys only, and is unknown (nil) when a
// locked key does not name its generator.
func TestLiveSetNamesTheLockedIndices(t *testing.T) {
	named := func(id wire.InstanceID, session string) *consul.KVPair {
		return &consul.KVPair{Key: "gen/index/" + id.String(), Session: session, Value: []byte(`{"instance":"` + hex.EncodeToString(id[:]) + `"}`)}
	}
	live := liveSet(consul.KVPairs{named(gen, "s1"), named(genB, "")})
	if live == nil || len(*live) != 1 {
		t.Fatalf("live %v, want only the locked generator", live)
	}
	if _, ok := (*live)[gen]; !ok {
		t.Fatalf("live %v lacks the locked generator", *live)
	}
	if got := liveSet(consul.KVPairs{named(gen, "s1"), {Key: "gen/index/1", Session: "s2", Value: []byte("not json")}}); got != nil {
		t.Fatalf("live %v, want unknown with a locked key that names no generator", *got)
	}
	if got := liveSet(nil); got == nil || len(*got) != 0 {
		t.Fatalf("live %v, want known and empty with no key", got)
	}
}
