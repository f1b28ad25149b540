package integerapi

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loopstock/loopstock/internal/logging"
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

// blockingStore holds Latest until release, and keeps the context it got.
type blockingStore struct {
	memStore
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	reads   int
	ctx     context.Context
}

func (s *blockingStore) Latest(ctx context.Context, n int) ([]windowapi.Window, error) {
	s.mu.Lock()
	s.reads++
	s.ctx = ctx
	s.mu.Unlock()
	s.started <- struct{}{}
	select {
	case <-s.release:
		return s.memStore.Latest(ctx, n)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// The refresh is shared: a client that goes away while it runs must not
// cancel it for the others.
func TestOneCallerLeavingDoesNotFailTheSharedRefresh(t *testing.T) {
	s := &blockingStore{memStore: memStore{windows: windows(3)}, started: make(chan struct{}, 1), release: make(chan struct{})}
	c := newCache(s, CacheTTL, nil)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }

	first, leave := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() { _, err := c.get(first); firstErr <- err }()
	<-s.started // the refresh runs on the first caller's behalf
	type result struct {
		snap *snapshot
		err  error
	}
	second := make(chan result, 1)
	go func() { snap, err := c.get(context.Background()); second <- result{snap, err} }()

	leave()
	if err := <-firstErr; err == nil {
		t.Fatal("the caller that left got windows after it left")
	}
	s.mu.Lock()
	refreshErr := s.ctx.Err()
	_, hasDeadline := s.ctx.Deadline()
	s.mu.Unlock()
	if refreshErr != nil {
		t.Errorf("the shared refresh was cancelled with its first caller: %v", refreshErr)
	}
	if !hasDeadline {
		t.Error("the shared refresh has no deadline: a hung Redis would hold every reader")
	}
	close(s.release)
	r := <-second
	if r.err != nil || len(r.snap.windows) != 3 {
		t.Fatalf("the caller that stayed got %v, %v; want the 3 windows", r.snap, r.err)
	}
	if s.reads != 1 {
		t.Fatalf("%d store reads; want the one refresh, shared", s.reads)
	}
}

// A reader that leaves is not a store failure: no 503 logged or counted.
func TestAReaderThatLeftIsNotAStoreError(t *testing.T) {
	s := &blockingStore{memStore: memStore{windows: windows(3)}, started: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(s.release)
	h := NewHandler(s, token, prometheus.NewRegistry(), logging.Discard())
	ctx, leave := context.WithCancel(context.Background())
	leave()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/integers", nil).WithContext(ctx))
	if rec.Code != statusClientGone {
		t.Errorf("status %d, want %d", rec.Code, statusClientGone)
	}
	if n := testutil.ToFloat64(h.m.storeErrors); n != 0 {
		t.Errorf("%v store errors counted for a reader that left", n)
	}
}
