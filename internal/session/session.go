// Package session is the one way loopstock holds a Consul session: the
// averager's leader lock (package leader) and the generators' indices
// (package slotlease) both stand on it.
//
// A session is created tied to the node and to the process's own health
// check, renewed every third of its TTL, and reported ended (Done) the
// moment Consul says it is gone or renewal has failed for a whole TTL: a
// holder must then stop acting on its locks, whatever Consul still says.
// Every call to Consul has a deadline, so a frozen agent never hangs the
// caller.
package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
)

// CallTimeout bounds one call to Consul (blocking queries add their wait).
const CallTimeout = 5 * time.Second

// ErrEnded is Err's answer once the session is gone.
var ErrEnded = errors.New("the consul session ended")

// Options describe a session.
type Options struct {
	Name string
	// CheckID is the holder's own health check: when it turns critical
	// (the process died), Consul ends the session at once.
	CheckID string
	// TTL bounds how long a holder that stopped renewing keeps its locks.
	TTL time.Duration
	// LockDelay is how long a lock lost with this session stays unacquirable.
	LockDelay time.Duration
}

// Session is one live Consul session, renewed until Close.
type Session struct {
	ID string

	client *consul.Client
	o      Options
	log    *logrus.Entry
	done   chan struct{}
	stop   context.CancelFunc
	closed chan struct{} // closed when the renewal loop has returned

	closeOnce sync.Once

	mu  sync.Mutex
	err error
}

// Create creates a session and starts renewing it.
func Create(ctx context.Context, client *consul.Client, o Options, log *logrus.Entry) (*Session, error) {
	if o.TTL < 10*time.Second {
		o.TTL = 10 * time.Second // Consul's minimum
	}
	checks := []string{"serfHealth"}
	if o.CheckID != "" {
		checks = append(checks, o.CheckID)
	}
	began := time.Now() // the TTL runs from about here
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	id, _, err := client.Session().Create(&consul.SessionEntry{
		Name: o.Name, TTL: o.TTL.String(), LockDelay: o.LockDelay, Checks: checks, Behavior: consul.SessionBehaviorRelease,
	}, (&consul.WriteOptions{}).WithContext(cctx))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("creating a consul session: %w", err)
	}
	rctx, stop := context.WithCancel(context.Background())
	s := &Session{ID: id, client: client, o: o, log: log.WithField("session", id), done: make(chan struct{}), stop: stop, closed: make(chan struct{})}
	go s.renew(rctx, began)
	if o.CheckID != "" {
		if err := s.destroyStale(ctx); err != nil {
			s.Close(ctx)
			return nil, err
		}
	}
	return s, nil
}

// Done is closed when the session has ended (or Close was called).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why Done is closed (nil while the session lives).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// renew keeps the session alive. It gives up when Consul no longer knows
// the session, or when no renewal succeeded for a TTL: from then on Consul
// may have ended it, and a holder that kept acting could overlap its
// successor.
func (s *Session) renew(ctx context.Context, last time.Time) {
	defer close(s.closed)
	wait := s.o.TTL / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		left := s.o.TTL - time.Since(last)
		if left <= 0 {
			s.log.WithField("ttl", s.o.TTL).Warn("consul session not renewed for its whole TTL: treating it as ended")
			s.end(fmt.Errorf("%w: not renewed for %s", ErrEnded, s.o.TTL))
			return
		}
		cctx, cancel := context.WithTimeout(ctx, min(CallTimeout, left))
		entry, _, err := s.client.Session().Renew(s.ID, (&consul.WriteOptions{}).WithContext(cctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait = min(time.Second, max(left/4, 100*time.Millisecond))
			s.log.WithError(err).Debug("renewing the consul session failed; retrying")
		case entry == nil:
			s.log.Warn("consul no longer knows this session: it ended")
			s.end(fmt.Errorf("%w: consul no longer knows it", ErrEnded))
			return
		default:
			last, wait = time.Now(), s.o.TTL/3
		}
	}
}

// Close stops renewing and destroys the session (releasing its locks), within
// ctx and CallTimeout; a session that could not be destroyed expires.
func (s *Session) Close(ctx context.Context) {
	s.closeOnce.Do(func() { s.close(ctx) })
}

func (s *Session) close(ctx context.Context) {
	s.stop()
	<-s.closed
	s.end(ErrEnded)
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if _, err := s.client.Session().Destroy(s.ID, (&consul.WriteOptions{}).WithContext(cctx)); err != nil {
		s.log.WithError(err).Debug("destroying the consul session failed; it expires after its TTL")
	}
}

// destroyStale destroys the other sessions on this session's node tied to
// the same check: those of an earlier run of this same service instance
// (same service ID, so same check) that died and was restarted before its
// check could fail. They would otherwise keep their locks until their TTL
// runs out.
func (s *Session) destroyStale(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	q := (&consul.QueryOptions{}).WithContext(cctx)
	own, _, err := s.client.Session().Info(s.ID, q)
	if err != nil || own == nil {
		return fmt.Errorf("reading the new consul session: %v", err)
	}
	list, _, err := s.client.Session().Node(own.Node, q)
	if err != nil {
		return fmt.Errorf("listing the consul sessions of node %s: %w", own.Node, err)
	}
	for _, e := range list {
		if e.ID == s.ID || !tiedTo(e, s.o.CheckID) {
			continue
		}
		if _, err := s.client.Session().Destroy(e.ID, (&consul.WriteOptions{}).WithContext(cctx)); err != nil {
			return fmt.Errorf("destroying the stale consul session %s: %w", e.ID, err)
		}
		s.log.WithFields(logrus.Fields{"stale_session": e.ID, "name": e.Name}).Info("destroyed a session of this instance's previous run")
	}
	return nil
}

func tiedTo(e *consul.SessionEntry, checkID string) bool {
	if slices.Contains(e.Checks, checkID) || slices.Contains(e.NodeChecks, checkID) {
		return true
	}
	return slices.ContainsFunc(e.ServiceChecks, func(c consul.ServiceCheck) bool { return c.ID == checkID })
}

// Call is ctx with CallTimeout, for one call to Consul.
func Call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}
