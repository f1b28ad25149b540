// Package watch is loopstock's one Consul blocking-query loop, after
// consul-template's watch/view.go: each query waits on the index of the
// last answer; an answer whose index did not move (the wait ran out) is not
// handed over again; an index that went backwards (a restarted or restored
// Consul) starts over from 0; queries are spaced by a minimum interval; a
// failed query is retried after a jittered, capped back-off; every query
// has a deadline. What is asked of Consul (the fetch) and what is done with
// an answer (the handler) are all that differ between users.
package watch

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// Next is what a handler wants after an answer.
type Next int

const (
	// WaitForChange blocks until Consul's index moves past this answer's.
	WaitForChange Next = iota
	// ReadAgain asks again at index 0 (an answer at once) after the
	// minimum interval: for a change Consul's index does not show, such as
	// a lock-delay running out.
	ReadAgain
	// Stop ends the loop; Run returns nil.
	Stop
)

// Options tune a loop; zero fields take the defaults below.
type Options struct {
	// Index is the index the first query waits on (0: answer at once).
	Index uint64
	// Wait is how long one blocking query may wait for a change.
	Wait time.Duration
	// MinInterval is the least time between the starts of two queries, so
	// that a key that changes all the time costs at most one query per
	// MinInterval.
	MinInterval time.Duration
	// Timeout bounds a query beyond its wait, so a frozen agent fails the
	// query instead of hanging it.
	Timeout time.Duration
	// Backoff is the pause after failed queries in a row.
	Backoff Backoff
	// OnError is told of each failed query and the pause before the next
	// (never of one failed because ctx ended). A non-nil return ends the
	// loop with that error; a nil OnError retries every failure.
	OnError func(err error, retryIn time.Duration) error
}

// The defaults: consul-template's minimum interval, and the deadline
// every other call to Consul has.
const (
	DefaultWait        = time.Minute
	DefaultMinInterval = 100 * time.Millisecond
	DefaultTimeout     = 5 * time.Second
)

func (o *Options) defaults() {
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	o.Backoff.defaults()
}

// Deadline is how long a query at index may take: its wait, the up to
// wait/16 Consul adds to spread wake-ups, and Timeout. A query at index 0
// does not block, so Timeout alone bounds it.
func (o Options) Deadline(index uint64) time.Duration {
	o.defaults()
	if index == 0 {
		return o.Timeout
	}
	return o.Wait + o.Wait/16 + o.Timeout
}

// Run repeats fetch until handle says Stop or returns an error, OnError
// returns an error, or ctx ends (then it returns ctx's error). fetch is
// given query options with WaitIndex, WaitTime and a context carrying the
// query's deadline set; it may set others (RequireConsistent, say).
//
// handle sees the first answer, every answer whose index moved forward,
// and every answer to a query at index 0 (after an error, a reset or
// ReadAgain: what changed meanwhile is unknown).
func Run[T any](ctx context.Context, o Options, fetch func(q *consul.QueryOptions) (T, *consul.QueryMeta, error), handle func(T) (Next, error)) error {
	o.defaults()
	index := o.Index
	failures := 0
	var notBefore time.Time
	for {
		if err := sleepUntil(ctx, notBefore); err != nil {
			return err
		}
		began := time.Now()
		notBefore = began.Add(o.MinInterval)
		data, meta, err := query(ctx, o, index, fetch)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && meta == nil {
			err = errors.New("consul answered without an index")
		}
		if err != nil {
			failures++
			pause := o.Backoff.Pause(failures)
			notBefore = laterOf(notBefore, time.Now().Add(pause))
			// Ask again without blocking: an agent that restarted may have
			// lost data and its index may have gone back, which would hold a
			// blocking query for its whole wait.
			index = 0
			if o.OnError != nil {
				if err := o.OnError(err, pause); err != nil {
					return err
				}
			}
			continue
		}
		failures = 0
		switch {
		case index != 0 && meta.LastIndex == index:
			continue // the wait ran out with no change
		case meta.LastIndex < index:
			index = 0 // the index went backwards: read afresh
			continue
		}
		next, err := handle(data)
		if err != nil {
			return err
		}
		switch next {
		case Stop:
			return nil
		case ReadAgain:
			index = 0
		default:
			index = meta.LastIndex
		}
	}
}

func query[T any](ctx context.Context, o Options, index uint64, fetch func(q *consul.QueryOptions) (T, *consul.QueryMeta, error)) (T, *consul.QueryMeta, error) {
	qctx, cancel := context.WithTimeout(ctx, o.Deadline(index))
	defer cancel()
	return fetch((&consul.QueryOptions{WaitIndex: index, WaitTime: o.Wait}).WithContext(qctx))
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Backoff is the pause after failures in a row: First, doubled per
// failure up to Max, each drawn at random from its upper half so that
// clients that failed together do not retry together.
type Backoff struct {
	First, Max time.Duration
}

// The default back-off.
const (
	DefaultFirstBackoff = 250 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
)

func (b *Backoff) defaults() {
	if b.First <= 0 {
		b.First = DefaultFirstBackoff
	}
	if b.Max <= 0 {
		b.Max = DefaultMaxBackoff
	}
	b.Max = max(b.Max, b.First)
}

// Pause is the pause after the failures-th failure in a row (from 1).
func (b Backoff) Pause(failures int) time.Duration {
	b.defaults()
	d := b.First
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(rand.Int64N(int64(d/2)+1))
}
