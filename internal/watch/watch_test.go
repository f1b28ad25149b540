package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// answer is one scripted reply of the fake Consul.
type answer struct {
	index uint64
	data  string
	err   error
}

// asked is one query as the fake Consul saw it.
type asked struct {
	index    uint64
	began    time.Time
	deadline time.Duration // left on the query's context when it began
}

// fakeConsul answers queries from a script; once the script is spent, a
// query blocks until its context ends, as a blocking query with nothing new.
type fakeConsul struct {
	mu      sync.Mutex
	script  []answer
	queries []asked
}

func newFake(script ...answer) *fakeConsul { return &fakeConsul{script: script} }

func (f *fakeConsul) fetch(q *consul.QueryOptions) (string, *consul.QueryMeta, error) {
	ctx := q.Context()
	dl, _ := ctx.Deadline()
	f.mu.Lock()
	f.queries = append(f.queries, asked{index: q.WaitIndex, began: time.Now(), deadline: time.Until(dl)})
	if len(f.script) == 0 {
		f.mu.Unlock()
		<-ctx.Done()
		return "", nil, ctx.Err()
	}
	a := f.script[0]
	f.script = f.script[1:]
	f.mu.Unlock()
	if a.err != nil {
		return "", nil, a.err
	}
	return a.data, &consul.QueryMeta{LastIndex: a.index}, nil
}

func (f *fakeConsul) asked() []asked {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

func (f *fakeConsul) indices() []uint64 {
	var out []uint64
	for _, q := range f.asked() {
		out = append(out, q.index)
	}
	return out
}

// handled collects what the loop hands over.
type handled struct {
	mu   sync.Mutex
	seen []string
}

func (h *handled) handle(s string) (Next, error) {
	h.mu.Lock()
	h.seen = append(h.seen, s)
	h.mu.Unlock()
	return WaitForChange, nil
}

func (h *handled) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// run starts Run and returns a stop that cancels it and returns Run's error.
func run(t *testing.T, o Options, fetch func(*consul.QueryOptions) (string, *consul.QueryMeta, error), handle func(string) (Next, error)) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- Run(ctx, o, fetch, handle) }()
	var err error
	var once sync.Once
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-result:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, result
}

// eventually polls cond every millisecond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fast keeps the timing tests short.
var fast = Options{MinInterval: time.Millisecond, Backoff: Backoff{First: time.Millisecond, Max: time.Millisecond}}

// queried waits until the fake has seen n queries (the last one blocking).
func queried(t *testing.T, f *fakeConsul, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d queries", n), func() bool { return len(f.asked()) >= n })
}

func TestAnAnswerWhoseIndexDidNotMoveIsNotHandedOverAgain(t *testing.T) {
	f := newFake(answer{index: 5, data: "a"}, answer{index: 5, data: "a"}, answer{index: 5, data: "a"}, answer{index: 6, data: "b"})
	var h handled
	stop, _ := run(t, fast, f.fetch, h.handle)
	queried(t, f, 5)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if got, want := h.list(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("handed over %q, want %q: the timed-out waits at index 5 must not be", got, want)
	}
	if got, want := f.indices(), []uint64{0, 5, 5, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("waited on indices %v, want %v", got, want)
	}
}

func TestAnIndexThatWentBackwardsStartsOverFromZero(t *testing.T) {
	f := newFake(answer{index: 10, data: "a"}, answer{index: 4, data: "stale"}, answer{index: 4, data: "b"}, answer{index: 9, data: "c"})
	var h handled
	stop, _ := run(t, fast, f.fetch, h.handle)
	queried(t, f, 5)
	stop()
	if got, want := f.indices(), []uint64{0, 10, 0, 4, 9}; !slices.Equal(got, want) {
		t.Errorf("waited on indices %v, want %v (back to 0 after the index went from 10 to 4)", got, want)
	}
	if got, want := h.list(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("handed over %q, want %q: the answer whose index went back is read afresh, not used", got, want)
	}
}

func TestTheFirstQueryWaitsOnTheGivenIndex(t *testing.T) {
	f := newFake(answer{index: 7, data: "timed out"}, answer{index: 8, data: "changed"})
	var h handled
	o := fast
	o.Index = 7
	stop, _ := run(t, o, f.fetch, h.handle)
	queried(t, f, 3)
	stop()
	if got, want := f.indices(), []uint64{7, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("waited on indices %v, want %v", got, want)
	}
	if got, want := h.list(), []string{"changed"}; !slices.Equal(got, want) {
		t.Errorf("handed over %q, want %q", got, want)
	}
}

func TestAQueryAtIndexZeroIsAlwaysHandedOver(t *testing.T) {
	errDown := errors.New("agent down")
	f := newFake(answer{index: 5, data: "a"}, answer{err: errDown}, answer{index: 5, data: "a again"})
	var h handled
	stop, _ := run(t, fast, f.fetch, h.handle)
	queried(t, f, 4)
	stop()
	if got, want := f.indices(), []uint64{0, 5, 0, 5}; !slices.Equal(got, want) {
		t.Errorf("waited on indices %v, want %v (an error sends the next query to index 0)", got, want)
	}
	// After a failure the handler must learn that Consul answers again.
	if got, want := h.list(), []string{"a", "a again"}; !slices.Equal(got, want) {
		t.Errorf("handed over %q, want %q", got, want)
	}
}

func TestTheHandlerDecidesWhatFollows(t *testing.T) {
	t.Run("read again", func(t *testing.T) {
		f := newFake(answer{index: 5, data: "refused"}, answer{index: 5, data: "ok"})
		var seen []string
		stop, _ := run(t, fast, f.fetch, func(s string) (Next, error) {
			seen = append(seen, s)
			if s == "refused" {
				return ReadAgain, nil
			}
			return WaitForChange, nil
		})
		queried(t, f, 3)
		stop()
		if got, want := f.indices(), []uint64{0, 0, 5}; !slices.Equal(got, want) {
			t.Errorf("waited on indices %v, want %v", got, want)
		}
		if !slices.Equal(seen, []string{"refused", "ok"}) {
			t.Errorf("handed over %q: an answer to a read again is new", seen)
		}
	})
	t.Run("stop", func(t *testing.T) {
		f := newFake(answer{index: 5, data: "a"}, answer{index: 6, data: "b"})
		err := Run(context.Background(), fast, f.fetch, func(s string) (Next, error) { return Stop, nil })
		if err != nil || len(f.asked()) != 1 {
			t.Errorf("Run returned %v after %d queries, want nil after 1", err, len(f.asked()))
		}
	})
	t.Run("error", func(t *testing.T) {
		f := newFake(answer{index: 5, data: "a"}, answer{index: 6, data: "b"})
		refused := errors.New("refused")
		err := Run(context.Background(), fast, f.fetch, func(s string) (Next, error) { return WaitForChange, refused })
		if !errors.Is(err, refused) || len(f.asked()) != 1 {
			t.Errorf("Run returned %v after %d queries, want the handler's error after 1", err, len(f.asked()))
		}
	})
}

func TestOnErrorCanEndTheLoop(t *testing.T) {
	errDown := errors.New("agent down")
	f := newFake(answer{err: errDown}, answer{index: 5, data: "a"})
	o := fast
	o.OnError = func(err error, _ time.Duration) error { return err }
	err := Run(context.Background(), o, f.fetch, func(string) (Next, error) { return WaitForChange, nil })
	if !errors.Is(err, errDown) || len(f.asked()) != 1 {
		t.Errorf("Run returned %v after %d queries, want the fetch's error after 1", err, len(f.asked()))
	}
}

func TestAnAnswerWithoutAnIndexIsAnError(t *testing.T) {
	var reported error
	o := fast
	o.OnError = func(err error, _ time.Duration) error { reported = err; return err }
	err := Run(context.Background(), o, func(*consul.QueryOptions) (string, *consul.QueryMeta, error) { return "a", nil, nil },
		func(string) (Next, error) { t.Error("an answer without an index was handed over"); return Stop, nil })
	if err == nil || reported == nil {
		t.Errorf("Run returned %v, OnError saw %v: want an error", err, reported)
	}
}

func TestBackoffGrowsIsJitteredAndCapped(t *testing.T) {
	b := Backoff{First: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	ceilings := []time.Duration{100, 200, 400, 800, 800, 800}
	for i, ceiling := range ceilings {
		ceiling *= time.Millisecond
		failures := i + 1
		distinct := map[time.Duration]bool{}
		for range 200 {
			p := b.Pause(failures)
			if p < ceiling/2 || p > ceiling {
				t.Fatalf("pause after %d failures: %s, want within [%s, %s]", failures, p, ceiling/2, ceiling)
			}
			distinct[p] = true
		}
		if len(distinct) < 100 {
			t.Errorf("after %d failures only %d distinct pauses in 200: not jittered", failures, len(distinct))
		}
	}
	if p := b.Pause(1 << 20); p > b.Max {
		t.Errorf("pause after very many failures %s, over the cap %s", p, b.Max)
	}
	if p := (Backoff{}).Pause(1); p < DefaultFirstBackoff/2 || p > DefaultFirstBackoff {
		t.Errorf("default first pause %s, want within [%s, %s]", p, DefaultFirstBackoff/2, DefaultFirstBackoff)
	}
}

// The loop waits out the pause it reports, grows it per failure in a row,
// and starts over after an answer.
func TestTheLoopBacksOffOnFailuresInARow(t *testing.T) {
	errDown := errors.New("agent down")
	f := newFake(answer{err: errDown}, answer{err: errDown}, answer{err: errDown}, answer{err: errDown},
		answer{index: 3, data: "a"}, answer{err: errDown})
	var mu sync.Mutex
	var pauses []time.Duration
	o := Options{MinInterval: time.Millisecond, Backoff: Backoff{First: 20 * time.Millisecond, Max: 60 * time.Millisecond},
		OnError: func(err error, retryIn time.Duration) error {
			if !errors.Is(err, errDown) {
				t.Errorf("OnError got %v", err)
			}
			mu.Lock()
			pauses = append(pauses, retryIn)
			mu.Unlock()
			return nil
		}}
	var h handled
	stop, _ := run(t, o, f.fetch, h.handle)
	queried(t, f, 7)
	stop()
	mu.Lock()
	defer mu.Unlock()
	ceilings := []time.Duration{20, 40, 60, 60, 20} // the fifth failure follows an answer
	if len(pauses) != len(ceilings) {
		t.Fatalf("OnError called %d times, want %d", len(pauses), len(ceilings))
	}
	q := f.asked()
	answerAt := 4 // the query that was answered; no pause follows it but the minimum interval
	for i, p := range pauses {
		ceiling := ceilings[i] * time.Millisecond
		if p < ceiling/2 || p > ceiling {
			t.Errorf("pause %d is %s, want within [%s, %s]", i+1, p, ceiling/2, ceiling)
		}
		failed := i
		if i == 4 {
			failed = 5
		}
		if gap := q[failed+1].began.Sub(q[failed].began); gap < p {
			t.Errorf("query %d came %s after failure %d, before its %s pause", failed+2, gap, i+1, p)
		}
	}
	if q[answerAt].index != 0 {
		t.Errorf("the query after a failure waited on index %d, want 0", q[answerAt].index)
	}
}

func TestQueriesAreSpacedByTheMinimumInterval(t *testing.T) {
	const interval = 30 * time.Millisecond
	var script []answer
	for i := uint64(1); i <= 5; i++ {
		script = append(script, answer{index: i, data: "changed"})
	}
	f := newFake(script...)
	var h handled
	started := time.Now()
	stop, _ := run(t, Options{MinInterval: interval}, f.fetch, h.handle)
	queried(t, f, 6)
	stop()
	q := f.asked()
	if first := q[0].began.Sub(started); first >= interval {
		t.Errorf("the first query waited %s: only later ones are spaced", first)
	}
	// The fake stamps a query when fetch is entered, a little after the loop
	// took its own start time, so a gap may fall short of the interval by
	// that delay; without spacing the gaps would be microseconds.
	const stampDelay = 5 * time.Millisecond
	for i := 1; i < len(q); i++ {
		if gap := q[i].began.Sub(q[i-1].began); gap < interval-stampDelay {
			t.Errorf("query %d began %s after the one before, want at least %s", i+1, gap, interval)
		}
	}
	if span, want := q[len(q)-1].began.Sub(q[0].began), time.Duration(len(q)-1)*interval; span < want-stampDelay {
		t.Errorf("%d queries spanned %s, want at least %s", len(q), span, want)
	}
	if len(h.list()) != 5 {
		t.Errorf("handed over %d answers, want 5", len(h.list()))
	}
}

func TestEveryQueryHasADeadline(t *testing.T) {
	o := Options{Wait: 32 * time.Second, Timeout: 3 * time.Second, MinInterval: time.Millisecond}
	f := newFake(answer{index: 5, data: "a"})
	var h handled
	stop, _ := run(t, o, f.fetch, h.handle)
	queried(t, f, 2)
	stop()
	q := f.asked()
	for i, want := range []time.Duration{3 * time.Second, 32*time.Second + 2*time.Second + 3*time.Second} {
		if d := q[i].deadline; d > want || d < want-time.Second {
			t.Errorf("query %d (index %d) had %s left, want about %s", i+1, q[i].index, d, want)
		}
	}
}

func TestStopsWhenItsContextEnds(t *testing.T) {
	t.Run("during a blocking query", func(t *testing.T) {
		f := newFake(answer{index: 5, data: "a"})
		calledOnError := false
		o := fast
		o.OnError = func(error, time.Duration) error { calledOnError = true; return nil }
		var h handled
		stop, _ := run(t, o, f.fetch, h.handle)
		queried(t, f, 2) // the second blocks until its context ends
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if calledOnError {
			t.Error("OnError was told of the query the loop's own end cut short")
		}
		if n := len(f.asked()); n != 2 {
			t.Errorf("%d queries, want no more after the end", n)
		}
	})
	t.Run("during a back-off", func(t *testing.T) {
		f := newFake(answer{err: errors.New("agent down")}, answer{index: 5, data: "a"})
		failed := make(chan struct{})
		o := Options{Backoff: Backoff{First: time.Hour, Max: time.Hour},
			OnError: func(error, time.Duration) error { close(failed); return nil }}
		var h handled
		stop, _ := run(t, o, f.fetch, h.handle)
		<-failed
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if n := len(f.asked()); n != 1 {
			t.Errorf("%d queries, want none after the end", n)
		}
	})
}
