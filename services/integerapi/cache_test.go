package integerapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/windowapi"
)

type countingStore struct {
	memStore
	reads int
}

func (s *countingStore) Latest(ctx context.Context, n int) ([]windowapi.Window, error) {
	s.reads++
	return s.memStore.Latest(ctx, n)
}

func TestCacheReadsTheStoreAtMostOncePerTTL(t *testing.T) {
	s := &countingStore{memStore: memStore{windows: windows(3)}}
	c := newCache(s, CacheTTL, nil)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	for i := 0; i < 5; i++ {
		snap, err := c.get(context.Background())
		if err != nil || len(snap.windows) != 3 {
			t.Fatalf("%v %v", snap, err)
		}
	}
	if s.reads != 1 {
		t.Fatalf("%d store reads within the TTL, want 1", s.reads)
	}
	now = now.Add(CacheTTL)
	c.get(context.Background())
	c.invalidate()
	c.get(context.Background())
	if s.reads != 3 {
		t.Fatalf("%d store reads, want one more after the TTL and one after a write", s.reads)
	}
	s.err = errors.New("redis down")
	now = now.Add(CacheTTL)
	if _, err := c.get(context.Background()); err == nil {
		t.Fatal("a failed refresh served stale windows: the API must say 503")
	}
}

func TestCachedJSONIsTheWindows(t *testing.T) {
	c := newCache(&memStore{windows: windows(12)}, CacheTTL, nil)
	snap, _ := c.get(context.Background())
	if string(snap.listJSON(10)) != string(encode(windows(12)[:10])) || string(snap.lastJSON()) != string(encode(windows(1)[0])) {
		t.Fatal("cached JSON differs from the windows")
	}
	empty, _ := newCache(&memStore{}, CacheTTL, nil).get(context.Background())
	if string(empty.listJSON(10)) != "[]\n" || empty.lastJSON() != nil {
		t.Fatalf("empty: %q %q", empty.listJSON(10), empty.lastJSON())
	}
}

func TestEachNewWindowIsReportedOnceWhenFirstServed(t *testing.T) {
	ws := windows(3) // ends 00:00:05, 00:00:00, 23:59:55
	later := func(w windowapi.Window, d time.Duration) windowapi.Window {
		w.Start, w.End = w.Start.Add(d), w.End.Add(d)
		return w
	}
	now := time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC)
	s := &memStore{windows: ws[1:]}
	type served struct{ end, at time.Time }
	var got []served
	c := newCache(s, CacheTTL, func(w windowapi.Window, at time.Time) { got = append(got, served{w.End, at}) })
	c.now = func() time.Time { return now }
	read := func(after time.Duration) {
		now = now.Add(after)
		c.invalidate()
		if _, err := c.get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	read(3 * time.Second) // 00:00:05: the first read reports nothing, no read came before it
	s.windows = ws
	read(600 * time.Millisecond) // 00:00:05.6: the window that ended at 00:00:05
	read(200 * time.Millisecond) // found again: nothing new
	if len(got) != 1 || !got[0].end.Equal(ws[0].End) || got[0].at.Sub(got[0].end) != 600*time.Millisecond {
		t.Fatalf("reported %v; want the window ending %v once, 600ms after its end", got, ws[0].End)
	}

	// Two windows land during a quiet spell: when they became readable is
	// unknown, so they are not reported, and not later either.
	s.windows = append([]windowapi.Window{later(ws[0], 10*time.Second), later(ws[0], 5*time.Second)}, ws...)
	read(10 * time.Second)
	read(100 * time.Millisecond)
	if len(got) != 1 {
		t.Fatalf("reported %v after a 10s gap between reads; want nothing more", got[1:])
	}

	// Two more land while clients read: each reported once, oldest first.
	for range 100 {
		read(100 * time.Millisecond) // now 00:00:25.9
	}
	s.windows = append([]windowapi.Window{later(ws[0], 20*time.Second), later(ws[0], 15*time.Second)}, s.windows...)
	read(100 * time.Millisecond)
	read(100 * time.Millisecond)
	if len(got) != 3 || !got[1].end.Equal(s.windows[1].End) || !got[2].end.Equal(s.windows[0].End) {
		t.Fatalf("reported %v; want the two new windows once each, oldest first", got)
	}
}
