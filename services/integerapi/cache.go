package integerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/loopstock/loopstock/internal/windowapi"
)

// cache keeps the newest MaxLimit windows and their JSON, so that reads cost
// no Redis round trip: it is refreshed at most every ttl (another instance's
// writes show within ttl) and at once after this instance's own writes. A
// refresh that fails is an error, so a down Redis still answers 503.
type cache struct {
	store Store
	ttl   time.Duration
	// timeout bounds a refresh. The refresh is shared by every reader that
	// waits for it, so it runs under its own context: one reader going away
	// must not fail the others.
	timeout time.Duration
	now     func() time.Time
	// firstServed is told of each window, once, when a read first finds it
	// in the store: how fresh the API is, as its clients see it. Only while
	// clients keep asking (the read before began at most servedLagMaxGap
	// earlier): after a quiet spell, when a window became readable is
	// unknown, and its age would pass for lateness.
	firstServed func(w windowapi.Window, at time.Time)

	mu        sync.Mutex
	snap      *snapshot
	fetched   time.Time
	flight    *flight
	newestEnd time.Time // the end of the newest window read so far
	prevRead  time.Time // when the last read of the store began (zero: none yet)
}

// refreshTimeout bounds one read of the newest windows from the store.
const refreshTimeout = 2 * time.Second

// servedLagMaxGap bounds the error of a reported serve lag: the time
// between the read that found a window and the read before it.
const servedLagMaxGap = time.Second

type flight struct {
	done chan struct{}
	snap *snapshot
	err  error
}

type snapshot struct {
	windows []windowapi.Window // newest first

	mu   sync.Mutex
	list map[int][]byte // limit → the JSON array
	last []byte
}

func newCache(store Store, ttl time.Duration, firstServed func(windowapi.Window, time.Time)) *cache {
	return &cache{store: store, ttl: ttl, timeout: refreshTimeout, now: time.Now, firstServed: firstServed}
}

// get returns a snapshot no older than ttl. ctx bounds only this caller's
// wait, not the refresh it may start or join.
func (c *cache) get(ctx context.Context) (*snapshot, error) {
	c.mu.Lock()
	if c.snap != nil && c.now().Sub(c.fetched) < c.ttl {
		s := c.snap
		c.mu.Unlock()
		return s, nil
	}
	f := c.flight
	if f == nil { // one refresh at a time; the others wait for it
		f = &flight{done: make(chan struct{})}
		c.flight = f
		go c.refresh(f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.snap, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refresh reads the store for the readers waiting on f, whoever started it.
func (c *cache) refresh(f *flight) {
	started := c.now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	ws, err := c.store.Latest(ctx, MaxLimit)
	cancel()
	f.err = err
	if err == nil {
		f.snap = &snapshot{windows: ws, list: map[int][]byte{}}
	}
	c.mu.Lock()
	if err == nil {
		c.snap, c.fetched = f.snap, started
		c.noteNew(ws, c.now(), started.Sub(c.prevRead) <= servedLagMaxGap)
	}
	c.prevRead = started
	c.flight = nil
	c.mu.Unlock()
	close(f.done)
}

// noteNew reports the windows newer than any read before (ws is newest
// first) when report is set. Called with c.mu held, so each window is
// reported at most once.
func (c *cache) noteNew(ws []windowapi.Window, at time.Time, report bool) {
	i := 0
	for i < len(ws) && ws[i].End.After(c.newestEnd) {
		i++
	}
	if i == 0 {
		return
	}
	c.newestEnd = ws[0].End
	for j := i - 1; j >= 0 && report && c.firstServed != nil; j-- { // oldest first
		c.firstServed(ws[j], at)
	}
}

// invalidate makes the next read fetch again (after this instance's write).
func (c *cache) invalidate() {
	c.mu.Lock()
	c.snap = nil
	c.mu.Unlock()
}

func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return b.Bytes()
}

// listJSON is the JSON of the newest n windows, encoded once per snapshot.
func (s *snapshot) listJSON(n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.list[n]; ok {
		return b
	}
	ws := s.windows[:min(n, len(s.windows))]
	if ws == nil {
		ws = []windowapi.Window{} // [] rather than null
	}
	b := encode(ws)
	s.list[n] = b
	return b
}

// lastJSON is the newest window's JSON, or nil when there is none.
func (s *snapshot) lastJSON() []byte {
	if len(s.windows) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = encode(s.windows[0])
	}
	return s.last
}
