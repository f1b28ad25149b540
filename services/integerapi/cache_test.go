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
	c := newCache(s, CacheTTL)
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
	c := newCache(&memStore{windows: windows(12)}, CacheTTL)
	snap, _ := c.get(context.Background())
	if string(snap.listJSON(10)) != string(encode(windows(12)[:10])) || string(snap.lastJSON()) != string(encode(windows(1)[0])) {
		t.Fatal("cached JSON differs from the windows")
	}
	empty, _ := newCache(&memStore{}, CacheTTL).get(context.Background())
	if string(empty.listJSON(10)) != "[]\n" || empty.lastJSON() != nil {
		t.Fatalf("empty: %q %q", empty.listJSON(10), empty.lastJSON())
	}
}
