// Package leader elects one active instance among several through a Consul
// lock (a KV key held by a session, package session) and hands the winner a
// fencing token: the lock key's modify index at acquisition, which only
// grows. A store that refuses tokens lower than the highest it has seen
// refuses a stale leader.
//
// The lock is taken with blocking queries on the key rather than consul/api's
// Lock, whose fixed 5 s pause after a failed acquisition (a lock-delay) can
// hide a release that follows: here a standby retries every RetryDelay.
// A term ends (Lost) as soon as the key is no longer held by its session or
// the session has ended, including when renewal failed for a whole TTL
// while Consul was unreachable.
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/session"
	"github.com/loopstock/loopstock/internal/watch"
)

// Options configure an election.
type Options struct {
	Key string
	// Value is stored in the key while held (who holds it, for operators).
	Value []byte
	// CheckID ties the session to the holder's own health check: when it
	// turns critical, the session ends at once. A session of an earlier
	// run with the same check (a crash and a quick restart) is destroyed
	// before campaigning.
	CheckID string
	// SessionTTL bounds how long a holder that stopped renewing keeps the
	// lock; LockDelay is how long a lost lock stays unacquirable.
	SessionTTL time.Duration
	LockDelay  time.Duration
}

// RetryDelay is the pause between attempts on a free key that could not be
// acquired (its lock-delay is running).
const RetryDelay = 200 * time.Millisecond

// waitTime is how long one blocking query on the key may wait.
const waitTime = time.Minute

// Term is one period of leadership.
type Term struct {
	// Fence is the token every write of this term carries.
	Fence uint64
	// Lost is closed when leadership is lost (or resigned).
	Lost <-chan struct{}

	kv      *consul.KV
	sess    *session.Session
	key     string
	log     *logrus.Entry
	cancel  context.CancelFunc
	endOnce sync.Once
}

// Resign releases the lock at once, so a standby takes over without waiting
// for the session to expire.
func (t *Term) Resign() error {
	// One deadline for both calls: a frozen agent costs a stop CallTimeout.
	ctx, cancel := session.Call(context.Background())
	defer cancel()
	_, _, err := t.kv.Release(&consul.KVPair{Key: t.key, Session: t.sess.ID}, (&consul.WriteOptions{}).WithContext(ctx))
	t.endWithin(ctx)
	if err != nil {
		return fmt.Errorf("releasing the leader lock: %w", err)
	}
	return nil
}

func (t *Term) end() { t.endWithin(context.Background()) }

// endWithin ends the term and destroys its session, within ctx.
func (t *Term) endWithin(ctx context.Context) {
	t.endOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
		}
		t.sess.Close(ctx)
	})
}

// campaignBackoff paces campaigns that failed in a row. A short cap: a
// standby must be back in the race soon after Consul is.
var campaignBackoff = watch.Backoff{First: 250 * time.Millisecond, Max: time.Second}

// Campaign blocks until this instance holds the lock or ctx ends.
func Campaign(ctx context.Context, client *consul.Client, o Options, log *logrus.Entry) (*Term, error) {
	for failures := 1; ; failures++ {
		term, err := campaignOnce(ctx, client, o, log)
		if err == nil {
			return term, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.WithError(err).Warn("leader election failed; retrying")
		timer := time.NewTimer(campaignBackoff.Pause(failures))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func campaignOnce(ctx context.Context, client *consul.Client, o Options, log *logrus.Entry) (*Term, error) {
	sess, err := session.Create(ctx, client, session.Options{
		Name: "leader " + o.Key, CheckID: o.CheckID, TTL: o.SessionTTL, LockDelay: o.LockDelay,
	}, log)
	if err != nil {
		return nil, err
	}
	t := &Term{kv: client.KV(), sess: sess, key: o.Key, log: log.WithField("key", o.Key)}
	// Until the lock is ours, a session that ends or a ctx that ends stops the attempt.
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	go func() {
		select {
		case <-sess.Done():
			acancel()
		case <-actx.Done():
		}
	}()
	fail := func(err error) (*Term, error) {
		t.end()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if serr := sess.Err(); serr != nil && !errors.Is(err, serr) {
			err = fmt.Errorf("%w (%v)", err, serr)
		}
		return nil, err
	}

	if err := t.acquire(actx, o.Value, log); err != nil {
		return fail(err)
	}
	cctx, ccancel := session.Call(actx)
	pair, _, err := t.kv.Get(o.Key, (&consul.QueryOptions{RequireConsistent: true}).WithContext(cctx))
	ccancel()
	if err != nil || pair == nil || pair.Session != sess.ID {
		return fail(fmt.Errorf("reading the fencing token of %s: %v", o.Key, err))
	}
	t.Fence = pair.ModifyIndex
	lost := make(chan struct{})
	t.Lost = lost
	mctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go t.monitor(mctx, pair.ModifyIndex, lost)
	return t, nil
}

// acquire waits on the key until it is free, then locks it with the term's
// session. The first read is consistent: a stale one could show a free key
// that is held. A query or an acquisition that fails ends the attempt (the
// campaign starts over with a new session).
func (t *Term) acquire(ctx context.Context, value []byte, log *logrus.Entry) error {
	var holder string // the session last reported as holding the key
	// RetryDelay spaces the attempts on a free key in its lock-delay.
	o := watch.Options{Wait: waitTime, MinInterval: RetryDelay, Timeout: session.CallTimeout,
		OnError: func(err error, _ time.Duration) error { return fmt.Errorf("reading %s: %w", t.key, err) }}
	err := watch.Run(ctx, o, func(q *consul.QueryOptions) (*consul.KVPair, *consul.QueryMeta, error) {
		q.RequireConsistent = q.WaitIndex == 0
		return t.kv.Get(t.key, q)
	}, func(pair *consul.KVPair) (watch.Next, error) {
		if pair != nil && pair.Session != "" && pair.Session != t.sess.ID {
			if pair.Session != holder {
				// Say who leads, once per holder: after an unclean stop it may be
				// this very service's previous run, until its session expires.
				holder = pair.Session
				log.WithFields(logrus.Fields{"key": t.key, "holder": string(pair.Value), "holder_session": pair.Session}).
					Info("standing by: another session holds the leader lock")
			}
			return watch.WaitForChange, nil
		}
		cctx, ccancel := session.Call(ctx)
		ok, _, err := t.kv.Acquire(&consul.KVPair{Key: t.key, Value: value, Session: t.sess.ID}, (&consul.WriteOptions{}).WithContext(cctx))
		ccancel()
		switch {
		case err != nil:
			return watch.Stop, fmt.Errorf("acquiring %s: %w", t.key, err)
		case ok:
			return watch.Stop, nil
		default:
			return watch.ReadAgain, nil // free but refused: its lock-delay runs
		}
	})
	if err != nil && err == ctx.Err() {
		return fmt.Errorf("acquiring %s: %w", t.key, err)
	}
	return err
}

// monitor closes lost when the key is no longer held by this term's
// session (released, taken), when the session has ended, or when the term
// ends. While Consul is unreachable the session's renewal decides: it ends
// once no renewal succeeded for a TTL.
func (t *Term) monitor(ctx context.Context, index uint64, lost chan struct{}) {
	defer t.end()
	defer close(lost) // first: a holder stops at once, whatever the clean-up costs
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.sess.Done():
			if ctx.Err() == nil {
				t.log.WithError(t.sess.Err()).Warn("leadership lost: its consul session ended")
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	// A short, flat back-off: an agent back from a restart that lost the
	// key is noticed within a fraction of a second.
	o := watch.Options{Index: index, Wait: waitTime, Timeout: session.CallTimeout,
		Backoff: watch.Backoff{First: 250 * time.Millisecond, Max: 250 * time.Millisecond}}
	watch.Run(ctx, o, func(q *consul.QueryOptions) (*consul.KVPair, *consul.QueryMeta, error) {
		return t.kv.Get(t.key, q)
	}, func(pair *consul.KVPair) (watch.Next, error) {
		if pair == nil || pair.Session != t.sess.ID {
			t.log.Warn("leadership lost: the lock is no longer held by this session")
			return watch.Stop, nil
		}
		return watch.WaitForChange, nil
	})
}
