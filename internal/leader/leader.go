// Package leader elects one active instance among several through a Consul
// lock (a KV key held by a session) and hands the winner a fencing token:
// the lock key's modify index at acquisition, which only grows. A store that
// refuses tokens lower than the highest it has seen refuses a stale leader.
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

// Term is one period of leadership.
type Term struct {
	// Fence is the token every write of this term carries.
	Fence uint64
	// Lost is closed when leadership is lost (or resigned).
	Lost <-chan struct{}

	lock      *consul.Lock
	session   *consul.Session
	sid       string
	stopRenew chan struct{}
	endOnce   sync.Once
}

// Resign releases the lock at once, so a standby takes over without waiting
// for the session to expire.
func (t *Term) Resign() error {
	err := t.lock.Unlock()
	t.end()
	if err != nil && err != consul.ErrLockNotHeld {
		return fmt.Errorf("releasing the leader lock: %w", err)
	}
	return nil
}

func (t *Term) end() {
	t.endOnce.Do(func() {
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
		term, err := campaignOnce(ctx, client, o, ttl)
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

func campaignOnce(ctx context.Context, client *consul.Client, o Options, ttl time.Duration) (*Term, error) {
	name := "leader " + o.Key
	sid, _, err := client.Session().Create(&consul.SessionEntry{
		Name: name, TTL: ttl.String(), LockDelay: o.LockDelay,
		Checks:   append([]string{"serfHealth"}, o.CheckIDs...),
		Behavior: consul.SessionBehaviorRelease,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating a consul session: %w", err)
	}
	t := &Term{session: client.Session(), sid: sid, stopRenew: make(chan struct{})}
	// The session is ours (Lock does not renew a session it did not create).
	go t.session.RenewPeriodic(ttl.String(), sid, nil, t.stopRenew)

	t.lock, err = client.LockOpts(&consul.LockOptions{
		Key: o.Key, Value: o.Value, Session: sid, MonitorRetries: 3, MonitorRetryTime: time.Second,
		// After a failed acquisition of a free key (its lock-delay after a
		// holder's session ended), retry soon: the default waits 5 s, and a
		// graceful release during that wait would go unnoticed.
		LockRetryTime: 200 * time.Millisecond,
	})
	if err != nil {
		t.end()
		return nil, err
	}
	lost, err := t.lock.Lock(ctx.Done())
	if err != nil || lost == nil {
		t.end()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	pair, _, err := client.KV().Get(o.Key, &consul.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil || pair.Session != sid {
		t.lock.Unlock()
		t.end()
		return nil, fmt.Errorf("reading the fencing token of %s: %v", o.Key, err)
	}
	t.Fence = pair.ModifyIndex
	out := make(chan struct{})
	go func() {
		<-lost
		t.end()
		close(out)
	}()
	t.Lost = out
	return t, nil
}
