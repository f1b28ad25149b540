// Package slotlease coordinates integer generators so that no two ever emit
// the same value in the same slot, with Consul (a Raft cluster, so no single
// point of failure) as the only shared party and no per-value round trip.
//
// Each generator holds an index k in 0..max-1: a Consul KV key locked by its
// session. For slot s it emits position k of the slot's shared random
// ordering of the values (package permute): distinct indices, distinct
// values. The lock alone would depend on clocks at a handover, so the key
// also holds a high-water slot: a holder may emit slot s only after writing
// hw ≥ s into the key, in a transaction that succeeds only while its session
// holds the lock; a new holder starts after the recorded hw. A handover is
// therefore safe whatever the hosts' clocks say. See docs/design.md.
package slotlease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/permute"
	"github.com/loopstock/loopstock/internal/session"
)

// Options configure a coordinator.
type Options struct {
	// Prefix is the KV folder shared by one group of generators.
	Prefix   string
	Instance string
	// CheckID ties the session to the generator's own health check, so a
	// crashed generator frees its index within one check interval.
	CheckID       string
	Interval      time.Duration
	Min, Max      uint32
	MaxGenerators int
	// PerSlot is how many integers each generator emits per slot (the load
	// mode): generator k takes positions k·PerSlot … k·PerSlot+PerSlot−1.
	PerSlot int
	// LeaseAhead is how far ahead of now a lease reaches; it is extended
	// every LeaseAhead/4, which is the cost: one round trip per
	// LeaseAhead/4/Interval values.
	LeaseAhead time.Duration
	SessionTTL time.Duration
	// Now is the clock (tests replace it).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.LeaseAhead == 0 {
		o.LeaseAhead = 2 * time.Second
	}
	if o.LeaseAhead < 4*o.Interval {
		o.LeaseAhead = 4 * o.Interval
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PerSlot < 1 {
		o.PerSlot = 1
	}
}

// Params are what every generator of a group must agree on; the first one
// writes them, the others check them.
type Params struct {
	Seed          string `json:"seed"`
	Min           uint32 `json:"min"`
	Max           uint32 `json:"max"`
	IntervalMs    int64  `json:"interval_ms"`
	MaxGenerators int    `json:"max_generators"`
	PerSlot       int    `json:"per_slot,omitempty"` // 0 (absent) means 1
}

// MismatchError says that this generator's flags disagree with its group's.
type MismatchError struct {
	Key         string
	Mine, Group Params
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("this generator's --min %d --max %d --interval %dms --max-generators %d --per-slot %d disagree with the group's "+
		"(min %d, max %d, interval %dms, max-generators %d, per-slot %d, in consul key %s): run every generator of a group with the same flags, "+
		"or stop them all and delete the key (consul kv delete -recurse %s) to start a new group",
		e.Mine.Min, e.Mine.Max, e.Mine.IntervalMs, e.Mine.MaxGenerators, max(1, e.Mine.PerSlot),
		e.Group.Min, e.Group.Max, e.Group.IntervalMs, e.Group.MaxGenerators, max(1, e.Group.PerSlot), e.Key, e.Key)
}

type holderValue struct {
	Instance string `json:"instance"`
	HW       int64  `json:"hw_slot"`
}

// Stats count the coordination's work, for metrics.
type Stats struct {
	RoundTrips uint64 // transactions and reads sent to consul
	Extends    uint64 // successful lease extensions
	Acquired   uint64 // indices acquired
	Lost       uint64 // leases lost (session ended, lock taken)
}

// Coordinator holds an index and a lease of slots.
type Coordinator struct {
	o      Options
	client *consul.Client
	kv     *consul.KV
	log    *logrus.Entry

	mu      sync.Mutex
	held    bool
	index   int
	start   int64 // first slot this lease may emit
	hw      int64 // last slot this lease may emit
	perm    *permute.Perm
	scratch []uint64
	stats   Stats
}

// New returns a coordinator; Run does the work.
func New(client *consul.Client, o Options, log *logrus.Entry) *Coordinator {
	o.defaults()
	return &Coordinator{o: o, client: client, kv: client.KV(), log: log.WithField("component", "slotlease"), index: -1}
}

// Slot returns the slot that holds t.
func (c *Coordinator) Slot(t time.Time) int64 { return t.UnixMilli() / c.o.Interval.Milliseconds() }

// Draw appends this generator's PerSlot values of slot to dst, or returns
// false when the slot is not covered by a lease (coordination unreachable,
// index not yet held): then emitting could collide.
func (c *Coordinator) Draw(slot int64, dst []uint32) ([]uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held || slot < c.start || slot > c.hw {
		return dst, false
	}
	k := uint64(c.o.PerSlot)
	first := uint64(c.index) * k
	c.scratch = c.perm.Range(slot, first, first+k, c.scratch[:0])
	for _, v := range c.scratch {
		dst = append(dst, c.o.Min+uint32(v))
	}
	return dst, true
}

// State reports the index held (-1 when none) and the lease's high-water slot.
func (c *Coordinator) State() (index int, hw int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return -1, 0
	}
	return c.index, c.hw
}

// Stats returns the counters so far.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Coordinator) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func (c *Coordinator) key(parts ...string) string {
	k := c.o.Prefix
	for _, p := range parts {
		k += "/" + p
	}
	return k
}

// Run keeps an index and a lease until ctx ends, then releases the index
// (keeping its high-water mark for the next holder). It returns only a
// *MismatchError or ctx's error.
func (c *Coordinator) Run(ctx context.Context) error {
	const firstPause = 250 * time.Millisecond
	backoff := firstPause
	for ctx.Err() == nil {
		held, err := c.term(ctx)
		var mm *MismatchError
		if errors.As(err, &mm) {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		if held {
			// It held an index: this loss is a new one, not the next of a series.
			backoff = firstPause
		}
		c.log.WithError(err).WithField("retry_in", backoff).Warn("no coordination lease; generation paused for this instance until one is held")
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return ctx.Err()
}

// term is one session: acquire an index, hold it until the lease is lost
// or ctx ends, then release it. held says whether an index was acquired.
func (c *Coordinator) term(ctx context.Context) (held bool, err error) {
	l, err := c.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer l.sess.Close(context.Background())
	defer c.setHeld(false)
	if err := c.hold(ctx, l); err != nil {
		return true, err
	}
	c.release(l)
	return true, nil
}

// lease is what a term holds: its session, its index and the last slot
// the lease covers.
type lease struct {
	sess  *session.Session
	index int
	key   string
	hw    int64
	log   *logrus.Entry
}

func (c *Coordinator) leaseSlots() int64 { return int64(c.o.LeaseAhead / c.o.Interval) }

func (c *Coordinator) setHeld(held bool) {
	c.mu.Lock()
	c.held = held
	c.mu.Unlock()
}

// acquire checks the group's parameters, creates a session and locks a
// free index with it; from then on Draw covers the slots from the first
// this holder may emit.
func (c *Coordinator) acquire(ctx context.Context) (*lease, error) {
	perm, err := c.permutation(ctx)
	if err != nil {
		return nil, err
	}
	sess, err := session.Create(ctx, c.client, session.Options{
		Name: "integer-gen " + c.o.Instance, CheckID: c.o.CheckID, TTL: c.o.SessionTTL, LockDelay: time.Second,
	}, c.log)
	c.count(func(s *Stats) { s.RoundTrips++ })
	if err != nil {
		return nil, err
	}
	index, prevHW, err := c.lockFreeIndex(ctx, sess.ID)
	if err != nil {
		sess.Close(context.Background())
		return nil, err
	}
	l := &lease{sess: sess, index: index, key: c.key("index", strconv.Itoa(index)), log: c.log.WithField("index", index)}

	now := c.Slot(c.o.Now())
	start := max(now, prevHW+1)
	if prevHW < 0 {
		// No record of an earlier holder: the KV store was new or was
		// lost. Wait one lease so that a holder that lost its record has
		// stopped (this case alone relies on clocks agreeing within a lease).
		start = now + c.leaseSlots()
	}
	// The first extension also records start-1 as the floor.
	l.hw = max(start-1, prevHW)
	c.mu.Lock()
	c.held, c.index, c.start, c.hw, c.perm = true, index, start, l.hw, perm
	c.stats.Acquired++
	c.mu.Unlock()
	l.log.WithFields(logrus.Fields{"start_slot": start, "previous_hw": prevHW}).Info("holding a generator index")
	return l, nil
}

// permutation reads (or starts) the group's parameters and returns the
// shared ordering of values they define.
func (c *Coordinator) permutation(ctx context.Context) (*permute.Perm, error) {
	params, err := c.params(ctx)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(params.Seed)
	if err != nil || len(seed) != permute.KeySize {
		return nil, fmt.Errorf("consul key %s holds a bad seed %q", c.key("params"), params.Seed)
	}
	return permute.New(seed, uint64(c.o.Max-c.o.Min)+1)
}

// hold extends the lease every LeaseAhead/4 until ctx ends (nil) or the
// lease is lost (an error that says how).
func (c *Coordinator) hold(ctx context.Context, l *lease) error {
	tick := time.NewTicker(c.o.LeaseAhead / 4)
	defer tick.Stop()
	for {
		next := max(c.Slot(c.o.Now())+c.leaseSlots(), l.hw)
		ok, err := c.txn(ctx, l.key, l.sess.ID, holderValue{Instance: c.o.Instance, HW: next}, consul.KVLock)
		if err != nil || !ok {
			if ctx.Err() != nil {
				return nil // stopping: the caller releases
			}
			c.count(func(s *Stats) { s.Lost++ })
			if err == nil {
				err = errors.New("the lock is no longer ours (session ended)")
			}
			return fmt.Errorf("extending the lease of index %d: %w", l.index, err)
		}
		l.hw = next
		c.mu.Lock()
		c.hw = l.hw
		c.stats.Extends++
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-l.sess.Done():
			// The lease may still reach ahead, but Consul may already have
			// given the index to another: stop emitting now.
			c.count(func(s *Stats) { s.Lost++ })
			return fmt.Errorf("index %d: %w", l.index, l.sess.Err())
		case <-tick.C:
		}
	}
}

// release stops emitting and unlocks the index, recording the high-water
// mark, so a successor need not wait for the session to expire.
func (c *Coordinator) release(l *lease) {
	c.setHeld(false)
	// The release and the session's end share one deadline: a frozen agent
	// delays a stop by CallTimeout at most.
	rctx, cancel := session.Call(context.Background())
	defer cancel()
	if _, err := c.txn(rctx, l.key, l.sess.ID, holderValue{Instance: c.o.Instance, HW: l.hw}, consul.KVUnlock); err != nil {
		l.log.WithError(err).Warn("releasing the generator index failed; it frees itself when the session expires")
	} else {
		l.log.WithField("hw_slot", l.hw).Info("released the generator index")
	}
	l.sess.Close(rctx)
}

// txn sets key's value under sid's lock with verb (lock or unlock); ok is
// false when the lock is held by another session or sid has ended.
func (c *Coordinator) txn(ctx context.Context, key, sid string, v holderValue, verb consul.KVOp) (bool, error) {
	body, _ := json.Marshal(v)
	cctx, cancel := session.Call(ctx)
	defer cancel()
	ok, resp, _, err := c.kv.Txn(consul.KVTxnOps{{Verb: verb, Key: key, Value: body, Session: sid}}, (&consul.QueryOptions{}).WithContext(cctx))
	c.count(func(s *Stats) { s.RoundTrips++ })
	if err != nil {
		return false, err
	}
	if !ok && resp != nil && len(resp.Errors) > 0 {
		return false, fmt.Errorf("consul refused: %s", resp.Errors[0].What)
	}
	return ok, nil
}

// lockFreeIndex locks the lowest free index and returns it with the
// high-water slot its last holder recorded (-1 when the key is new).
func (c *Coordinator) lockFreeIndex(ctx context.Context, sid string) (int, int64, error) {
	for wait := 250 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		cctx, cancel := session.Call(ctx)
		pairs, _, err := c.kv.List(c.key("index")+"/", (&consul.QueryOptions{RequireConsistent: true}).WithContext(cctx))
		cancel()
		c.count(func(s *Stats) { s.RoundTrips++ })
		if err != nil {
			return 0, 0, fmt.Errorf("listing generator indices: %w", err)
		}
		byKey := make(map[string]*consul.KVPair, len(pairs))
		for _, p := range pairs {
			byKey[p.Key] = p
		}
		for i := 0; i < c.o.MaxGenerators; i++ {
			key := c.key("index", strconv.Itoa(i))
			p := byKey[key]
			if p != nil && p.Session != "" {
				continue
			}
			prev := int64(-1)
			var check *consul.KVTxnOp
			if p == nil {
				check = &consul.KVTxnOp{Verb: consul.KVCheckNotExists, Key: key}
			} else {
				var hv holderValue
				if err := json.Unmarshal(p.Value, &hv); err == nil {
					prev = hv.HW
				}
				check = &consul.KVTxnOp{Verb: consul.KVCheckIndex, Key: key, Index: p.ModifyIndex}
			}
			body, _ := json.Marshal(holderValue{Instance: c.o.Instance, HW: prev})
			cctx, cancel := session.Call(ctx)
			ok, _, _, err := c.kv.Txn(consul.KVTxnOps{check, {Verb: consul.KVLock, Key: key, Value: body, Session: sid}}, (&consul.QueryOptions{}).WithContext(cctx))
			cancel()
			c.count(func(s *Stats) { s.RoundTrips++ })
			if err != nil {
				return 0, 0, fmt.Errorf("locking %s: %w", key, err)
			}
			if ok {
				return i, prev, nil
			}
		}
		c.log.WithField("max_generators", c.o.MaxGenerators).Warn("every generator index is taken or in its lock delay; waiting")
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// params writes this group's parameters if none exist, and checks them.
func (c *Coordinator) params(ctx context.Context) (Params, error) {
	key := c.key("params")
	mine := Params{Min: c.o.Min, Max: c.o.Max, IntervalMs: c.o.Interval.Milliseconds(), MaxGenerators: c.o.MaxGenerators}
	if c.o.PerSlot > 1 {
		mine.PerSlot = c.o.PerSlot
	}
	for {
		cctx, cancel := session.Call(ctx)
		p, _, err := c.kv.Get(key, (&consul.QueryOptions{RequireConsistent: true}).WithContext(cctx))
		cancel()
		c.count(func(s *Stats) { s.RoundTrips++ })
		if err != nil {
			return Params{}, fmt.Errorf("reading %s: %w", key, err)
		}
		if p != nil {
			var group Params
			if err := json.Unmarshal(p.Value, &group); err != nil {
				return Params{}, fmt.Errorf("consul key %s is not valid JSON (%v): delete it to start a new group", key, err)
			}
			if group.Min != mine.Min || group.Max != mine.Max || group.IntervalMs != mine.IntervalMs || group.MaxGenerators != mine.MaxGenerators ||
				group.PerSlot != mine.PerSlot {
				return Params{}, &MismatchError{Key: c.o.Prefix, Mine: mine, Group: group}
			}
			return group, nil
		}
		seed := make([]byte, permute.KeySize)
		rand.Read(seed)
		mine.Seed = hex.EncodeToString(seed)
		body, _ := json.Marshal(mine)
		cctx, cancel = session.Call(ctx)
		ok, _, err := c.kv.CAS(&consul.KVPair{Key: key, Value: body, ModifyIndex: 0}, (&consul.WriteOptions{}).WithContext(cctx))
		cancel()
		c.count(func(s *Stats) { s.RoundTrips++ })
		if err != nil {
			return Params{}, fmt.Errorf("writing %s: %w", key, err)
		}
		if ok {
			c.log.WithField("key", key).Info("started a new generator group")
			return mine, nil
		}
	}
}
