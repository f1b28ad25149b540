package integerapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

type storeRig struct {
	consul *testenv.Consul
	redis  *testenv.Redis
	store  *RedisStore
}

func newStoreRig(t *testing.T, retention int) *storeRig {
	if testing.Short() {
		t.Skip("needs redis-server and consul")
	}
	c := testenv.StartConsul(t)
	r := testenv.StartRedis(t)
	r.RegisterIn(t, c)
	c.WaitPassing(t, "redis", 1, 20*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := discovery.New(ctx, c.Client, "redis", logging.Discard())
	if _, err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s := NewRedisStore(DialConsulRedis(w, ClientOptions{}), StoreOptions{Prefix: "test", Retention: retention})
	t.Cleanup(func() { s.Close() })
	return &storeRig{consul: c, redis: r, store: s}
}

const inst = "0102030405060708090a0b0c0d0e0f10"

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func put(t *testing.T, s Store, startSec int, fence uint64, pieces ...windowapi.Piece) windowapi.WriteResult {
	t.Helper()
	start := base.Add(time.Duration(startSec) * time.Second)
	res, err := s.Put(context.Background(), start, windowapi.Write{End: start.Add(5 * time.Second), Fence: fence, Pieces: pieces})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	return res
}

func pc(first, last uint64, sum int64) windowapi.Piece {
	return windowapi.Piece{Instance: inst, FirstSeq: first, LastSeq: last, Count: int64(last - first + 1), Sum: sum}
}

func TestStoreMergesPiecesOnce(t *testing.T) {
	s := newStoreRig(t, 100).store
	res := put(t, s, 0, 1, pc(0, 9, 100), pc(10, 19, 200))
	if !res.Created || res.Count != 20 || res.Sum != 300 || res.Average != 15 || res.Pieces[0] != windowapi.Added {
		t.Fatalf("first write %+v", res)
	}
	// the same write again: nothing changes
	res = put(t, s, 0, 1, pc(0, 9, 100), pc(10, 19, 200))
	if res.Created || res.Count != 20 || res.Amendments != 0 || res.Pieces[0] != windowapi.Duplicate || res.Pieces[1] != windowapi.Duplicate {
		t.Fatalf("repeated write %+v", res)
	}
	// a late piece amends, once
	res = put(t, s, 0, 1, pc(20, 20, 50), pc(5, 7, 999))
	if res.Count != 21 || res.Sum != 350 || res.Amendments != 1 || res.Pieces[0] != windowapi.Added || res.Pieces[1] != windowapi.Duplicate {
		t.Fatalf("amendment %+v", res)
	}
	// a piece straddling a stored range is refused
	res = put(t, s, 0, 1, pc(18, 25, 1))
	if res.Count != 21 || res.Pieces[0] != windowapi.Conflict {
		t.Fatalf("conflict %+v", res)
	}
	ws, err := s.Latest(context.Background(), 10)
	if err != nil || len(ws) != 1 || ws[0].Count != 21 || ws[0].Sum != 350 || ws[0].Amendments != 1 {
		t.Fatalf("latest %+v %v", ws, err)
	}
}

func TestStoreRefusesAStaleFence(t *testing.T) {
	s := newStoreRig(t, 100).store
	put(t, s, 0, 5, pc(0, 0, 1))
	_, err := s.Put(context.Background(), base.Add(5*time.Second), windowapi.Write{End: base.Add(10 * time.Second), Fence: 4, Pieces: []windowapi.Piece{pc(1, 1, 1)}})
	if !errors.Is(err, ErrStaleFence) {
		t.Fatalf("fence 4 after 5: %v", err)
	}
	put(t, s, 5, 6, pc(1, 1, 1)) // a newer leader goes on
}

func TestStoreKeepsTheNewestWindowsNewestFirst(t *testing.T) {
	s := newStoreRig(t, 10).store
	for i := 0; i < 25; i++ {
		put(t, s, i*5, 1, pc(uint64(i), uint64(i), int64(i)))
	}
	ws, err := s.Latest(context.Background(), 100)
	if err != nil || len(ws) != 10 {
		t.Fatalf("%d windows (%v), want the retention of 10", len(ws), err)
	}
	for i, w := range ws {
		if want := base.Add(time.Duration(24-i) * 5 * time.Second); !w.Start.Equal(want) {
			t.Fatalf("window %d starts %v, want %v", i, w.Start, want)
		}
	}
}

// An acknowledged window survives redis-server being killed (AOF, fsync always).
func TestAcknowledgedWindowSurvivesRedisKill(t *testing.T) {
	r := newStoreRig(t, 100)
	put(t, r.store, 0, 1, pc(0, 99, 500050))
	r.redis.Kill()
	if _, err := r.store.Latest(context.Background(), 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with redis down: %v, want ErrUnavailable", err)
	}
	r.redis.Start()
	r.redis.WaitReady(t)
	var ws []windowapi.Window
	testenv.Eventually(t, 10*time.Second, "the store to answer again", func() bool {
		var err error
		ws, err = r.store.Latest(context.Background(), 1)
		return err == nil
	})
	if len(ws) != 1 || ws[0].Count != 100 || ws[0].Average != 5000.5 {
		t.Fatalf("after restart %+v", ws)
	}
}

func TestHungRedisIsReportedAndRecovers(t *testing.T) {
	r := newStoreRig(t, 100)
	r.redis.Signal(syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := r.store.Ping(ctx)
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ping of a stopped redis: %v", err)
	}
	r.redis.Signal(syscall.SIGCONT)
	testenv.Eventually(t, 10*time.Second, "ping after SIGCONT", func() bool { return r.store.Ping(context.Background()) == nil })
}

// When Consul says Redis moved, the next connections go to the new one.
func TestStoreFollowsRedisMoving(t *testing.T) {
	r := newStoreRig(t, 100)
	put(t, r.store, 0, 1, pc(0, 0, 1))
	second := testenv.StartRedis(t)
	second.RegisterIn(t, r.consul)
	r.redis.Kill()
	testenv.Eventually(t, 20*time.Second, "writes to reach the new redis", func() bool {
		_, err := r.store.Put(context.Background(), base.Add(5*time.Second), windowapi.Write{End: base.Add(10 * time.Second), Fence: 1, Pieces: []windowapi.Piece{pc(1, 1, 1)}})
		return err == nil
	})
	ws, err := r.store.Latest(context.Background(), 10)
	if err != nil || len(ws) != 1 || !ws[0].Start.Equal(base.Add(5*time.Second)) {
		t.Fatalf("the new redis holds %+v (%v)", ws, err)
	}
}

func TestStoreReadsHistoryBeforeAStartAndOneWindow(t *testing.T) {
	s := newStoreRig(t, 100).store
	for i := 0; i < 12; i++ {
		put(t, s, i*5, 1, pc(uint64(i), uint64(i), int64(i)))
	}
	ctx := context.Background()
	ws, err := s.Before(ctx, base.Add(30*time.Second), 4) // windows 5, 4, 3, 2
	if err != nil || len(ws) != 4 || !ws[0].Start.Equal(base.Add(25*time.Second)) || !ws[3].Start.Equal(base.Add(10*time.Second)) {
		t.Fatalf("4 before 00:00:30: %+v (%v); want the windows from 00:00:25 back to 00:00:10", ws, err)
	}
	// A bound between two starts: the window that starts a millisecond before it is included.
	ws, err = s.Before(ctx, base.Add(5*time.Second+500*time.Microsecond), 100)
	if err != nil || len(ws) != 2 || !ws[0].Start.Equal(base.Add(5*time.Second)) {
		t.Fatalf("before 00:00:05.0005: %+v (%v); want 00:00:05 and 00:00:00", ws, err)
	}
	if ws, err := s.Before(ctx, base, 10); err != nil || len(ws) != 0 {
		t.Fatalf("before the oldest: %+v (%v); want none", ws, err)
	}
	w, ok, err := s.Get(ctx, base.Add(55*time.Second))
	if err != nil || !ok || w.Count != 1 || w.Sum != 11 || !w.End.Equal(base.Add(60*time.Second)) {
		t.Fatalf("window at 00:00:55: %+v %v %v", w, ok, err)
	}
	if _, ok, err := s.Get(ctx, base.Add(57*time.Second)); ok || err != nil {
		t.Fatalf("a start with no window: found=%v %v", ok, err)
	}
}

// Paging through the API reads every stored window once, newest first,
// beyond the newest 100.
func TestPagingReadsTheWholeHistory(t *testing.T) {
	s := newStoreRig(t, 1000).store
	const n = 250
	for i := 0; i < n; i++ {
		put(t, s, i*5, 1, pc(uint64(i), uint64(i), int64(i)))
	}
	srv := httptest.NewServer(NewHandler(s, token, prometheus.NewRegistry(), logging.Discard()))
	defer srv.Close()
	next, pages := "/v1/integers?limit=100", 0
	var got []windowapi.Window
	for next != "" {
		resp, err := http.Get(srv.URL + next)
		if err != nil {
			t.Fatal(err)
		}
		var page []windowapi.Window
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("GET %s: %d %v", next, resp.StatusCode, err)
		}
		got = append(got, page...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			u, _, ok := strings.Cut(strings.TrimPrefix(l, "<"), ">")
			if !ok {
				t.Fatalf("Link %q", l)
			}
			next = u
		}
		if pages++; pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != n {
		t.Fatalf("%d windows read in %d pages, want %d", len(got), pages, n)
	}
	for i, w := range got {
		if want := base.Add(time.Duration(n-1-i) * 5 * time.Second); !w.Start.Equal(want) || w.Sum != int64(n-1-i) {
			t.Fatalf("window %d: %+v, want start %v", i, w, want)
		}
	}
	rec := httptest.NewRecorder()
	NewHandler(s, token, prometheus.NewRegistry(), logging.Discard()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/integers/2026-01-01T00:00:05Z", nil))
	var w windowapi.Window
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &w) != nil || w.Sum != 1 || w.Count != 1 {
		t.Fatalf("GET one window: %d %s", rec.Code, rec.Body)
	}
}
