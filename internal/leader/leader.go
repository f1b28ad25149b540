// Package leader elects one active instance among several through a Consul
// lock (a KV key held by a session) and hands the winner a fencing token:
// the lock key's modify index at acquisition, which only grows. A store that
// refuses tokens lower than the highest it has seen refuses a stale leader.
//
// The lock is taken with blocking queries on the key rather than consul/api's
// Lock, whose fixed 5 s pause after a failed acquisition (a lock-delay) can
// hide a release that follows: here a standby retries every RetryDelay.
package leader

import (
	"context"
	"fmt"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
)

// Options configure an election.
type Options struct {
	Key string
	// Value is stored in the key while held (who holds it, for operators).
	Value []byte
	// CheckIDs tie the session to health checks (besides the node's): when
	// the holder's own check turns critical, the session ends at once.
	CheckIDs []string
	// SessionTTL bounds how long a holder that stopped renewing keeps the
	// lock; LockDelay is how long a lost lock stays unacquirable.
	SessionTTL time.Duration
	LockDelay  time.Duration
}

// RetryDelay is the pause between attempts on a free key that could not be
// acquired (its lock-delay is running).
const RetryDelay = 200 * time.Millisecond

// Term is one period of leadership.
type Term struct {
	// Fence is the token every write of this term carries.
	Fence uint64
	// Lost is closed when leadership is lost (or resigned).
	Lost <-chan struct{}

	kv        *consul.KV
	session   *consul.Session
	key, sid  string
	stopRenew chan struct{}
	cancel    context.CancelFunc
	endOnce   sync.Once
}

// Resign releases the lock at once, so a standby takes over without waiting
// for the session to expire.
func (t *Term) Resign() error {
	_, _, err := t.kv.Release(&consul.KVPair{Key: t.key, Session: t.sid}, nil)
	t.end()
	if err != nil {
		return fmt.Errorf("releasing the leader lock: %w", err)
	}
	return nil
}

func (t *Term) end() {
	t.endOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
		}
		close(t.stopRenew)
		t.session.Destroy(t.sid, nil)
	})
}

// Campaign blocks until this instance holds the lock or ctx ends.
func Campaign(ctx context.Context, client *consul.Client, o Options, log *logrus.Entry) (*Term, error) {
	ttl := o.SessionTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	backoff := 250 * time.Millisecond
	for {
		term, err := campaignOnce(ctx, client, o, ttl, log)
		if err == nil {
			return term, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.WithError(err).Warn("leader election failed; retrying")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		// A short cap: a standby must be back in the race soon after Consul is.
		backoff = min(backoff*2, time.Second)
	}
}

func campaignOnce(ctx context.Context, client *consul.Client, o Options, ttl time.Duration, log *logrus.Entry) (*Term, error) {
	sid, _, err := client.Session().Create(&consul.SessionEntry{
		Name: "leader " + o.Key, TTL: ttl.String(), LockDelay: o.LockDelay,
		Checks:   append([]string{"serfHealth"}, o.CheckIDs...),
		Behavior: consul.SessionBehaviorRelease,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating a consul session: %w", err)
	}
	t := &Term{kv: client.KV(), session: client.Session(), key: o.Key, sid: sid, stopRenew: make(chan struct{})}
	// The session is ours to renew; if it ends, Consul releases the key.
	go t.session.RenewPeriodic(ttl.String(), sid, nil, t.stopRenew)

	var index uint64
	var holder string // the session last reported as holding the key
	for {
		q := (&consul.QueryOptions{WaitIndex: index, WaitTime: time.Minute, RequireConsistent: index == 0}).WithContext(ctx)
		pair, meta, err := t.kv.Get(o.Key, q)
		if err != nil {
			t.end()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("reading %s: %w", o.Key, err)
		}
		if pair != nil && pair.Session != "" && pair.Session != sid {
			if pair.Session != holder {
				// Say who leads, once per holder: after an unclean stop it may be
				// this very service's previous run, until its session expires.
				holder = pair.Session
				log.WithFields(logrus.Fields{"key": o.Key, "holder": string(pair.Value), "holder_session": pair.Session}).
					Info("standing by: another session holds the leader lock")
			}
			index = meta.LastIndex // held: wait for it to change
			continue
		}
		ok, _, err := t.kv.Acquire(&consul.KVPair{Key: o.Key, Value: o.Value, Session: sid}, nil)
		if err != nil {
			t.end()
			return nil, fmt.Errorf("acquiring %s: %w", o.Key, err)
		}
		if ok {
			break
		}
		index = 0 // free but refused: its lock-delay runs; try again shortly
		select {
		case <-ctx.Done():
			t.end()
			return nil, ctx.Err()
		case <-time.After(RetryDelay):
		}
	}
	pair, _, err := t.kv.Get(o.Key, &consul.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil || pair.Session != sid {
		t.end()
		return nil, fmt.Errorf("reading the fencing token of %s: %v", o.Key, err)
	}
	t.Fence = pair.ModifyIndex
	lost := make(chan struct{})
	t.Lost = lost
	mctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go t.monitor(mctx, pair.ModifyIndex, lost)
	return t, nil
}

// monitor closes lost when the key is no longer held by this term's
// session (released, session ended), or when the term ends.
func (t *Term) monitor(ctx context.Context, index uint64, lost chan struct{}) {
	defer close(lost)
	defer t.end()
	failures := 0
	for ctx.Err() == nil {
		pair, meta, err := t.kv.Get(t.key, (&consul.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
		if err != nil {
			// Consul unreachable: keep leading while the session may still
			// be alive (the store's fence stops a stale leader anyway).
			if failures++; failures > 3 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		failures = 0
		if pair == nil || pair.Session != t.sid {
			return
		}
		index = meta.LastIndex
	}
}
