// Package averager is integeraverage-cal: it consumes the generators'
// batches, groups the integers by event time into windows aligned to the
// epoch, and writes each closed window to integer-api. A message is
// FINished only once every window it contributed to is stored; a window
// write is idempotent per (generator, sequence range), so redelivery and
// duplicate publishes count once (docs/design.md).
package averager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/wire"
)

// Message is what the aggregator needs of an NSQ message.
type Message interface {
	Body() []byte
	Finish()
	Touch()
	// Requeue hands the message back to nsqd for another consumer.
	Requeue(delay time.Duration)
}

// Writer stores windows (integer-api's client).
type Writer interface {
	Put(ctx context.Context, start time.Time, w windowapi.Write) (windowapi.WriteResult, error)
}

// DeadLetter publishes a rejected message with its reason; it returns once
// the dead-letter topic holds it.
type DeadLetter interface {
	Reject(reason, detail string, body []byte) error
}

// Config is what the aggregator needs of the options.
type Config struct {
	Window      time.Duration
	Grace       time.Duration // wait after a window's end before writing it
	MaxLateness time.Duration // amend windows up to this long after their end
	MaxFuture   time.Duration // accept event times at most this far ahead
	Limits      wire.Limits
	TouchEvery  time.Duration
	FlushEvery  time.Duration
	// WriteTimeout bounds one window write; with TouchEvery it bounds the
	// time between two touches of a held message.
	WriteTimeout time.Duration
	// Live names the live generators; with it a window is written as soon
	// as every one of them has passed its end (watermark.go), Grace being
	// the upper bound. Nil: every window waits for Grace.
	Live LiveGenerators
}

// msgState is where a held message is in its life. It leaves msgHeld once:
// to msgFinished when every piece it carries is stored, or to msgRequeued
// when it is handed back to nsqd.
type msgState uint8

const (
	msgHeld msgState = iota
	msgFinished
	msgRequeued
)

// held is one delivered message until every piece it carries is stored.
// Copies of one message (a redelivery after a timeout, nsqd re-reading
// its disk queue, a duplicate publish) are held apart: each is FINished
// only once the pieces it carries are stored, whichever copy brought them.
type held struct {
	msg       Message
	state     msgState
	pending   int // pieces it carries that are not stored yet
	lastTouch time.Time
}

func (h *held) finish() {
	if h.state == msgHeld {
		h.state = msgFinished
		h.msg.Finish()
	}
}

func (h *held) requeue(delay time.Duration) {
	if h.state == msgHeld {
		h.state = msgRequeued
		h.msg.Requeue(delay)
	}
}

// piece is what a window's write needs of one run of a message's integers,
// nothing per integer: a dead letter re-decodes its owner's body.
type piece struct {
	key        pieceKey
	count, sum int64
	// owners are the held copies that carry it; each waits for its write.
	owners []*held
}

type pieceKey struct {
	instance    wire.InstanceID
	first, last uint64
}

type bucket struct {
	span    window.Span
	pieces  []*piece
	seen    map[pieceKey]*piece
	retryAt time.Time
	backoff time.Duration
}

// collisionTable is a fixed-size, direct-mapped record of recent (slot,
// value) pairs and who emitted them: a check of the no-collision guarantee
// on what passes by, in constant memory. An evicted entry can hide a
// collision; an entry never reports a false one.
type collisionTable []collisionEntry

type collisionEntry struct {
	eventMs  int64
	value    uint32
	used     bool
	instance wire.InstanceID
}

const collisionTableSize = 1 << 14 // 512 KiB: minutes of the default rate

// Aggregator owns all windowing state; one goroutine runs it.
type Aggregator struct {
	cfg    Config
	fence  uint64
	writer Writer
	dead   DeadLetter
	m      *metrics
	log    *logrus.Entry
	now    func() time.Time

	buckets    map[int64]*bucket
	held       map[*held]struct{} // every message in msgHeld
	batch      wire.Batch         // decoding scratch
	collisions collisionTable
	lastEnd    float64 // newest window stored, for the gauges
	streams    map[wire.InstanceID]*stream
	advanced   bool // a stream moved into a later window since the last flush
	trimmedAt  time.Time
}

func newAggregator(cfg Config, fence uint64, w Writer, d DeadLetter, m *metrics, log *logrus.Entry) *Aggregator {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	return &Aggregator{cfg: cfg, fence: fence, writer: w, dead: d, m: m, log: log, now: time.Now,
		buckets: map[int64]*bucket{}, held: map[*held]struct{}{}, streams: map[wire.InstanceID]*stream{}}
}

// Run consumes in until ctx ends or the store refuses this term's fence,
// then hands every message not yet finished back to nsqd.
func (a *Aggregator) Run(ctx context.Context, in <-chan Message) error {
	tick := time.NewTicker(a.cfg.FlushEvery)
	defer tick.Stop()
	defer a.requeueAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-in:
			a.Add(m)
			if a.advanced {
				// A window may have become complete: write it now, not at the next tick.
				if err := a.Flush(ctx); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := a.Flush(ctx); err != nil {
				return err
			}
		}
	}
}

// Add takes one message.
func (a *Aggregator) Add(m Message) {
	a.m.consumed.Inc()
	body := m.Body()
	if err := wire.Decode(body, a.cfg.Limits, &a.batch); err != nil {
		a.reject(m, string(wire.ReasonOf(err)), err.Error(), body)
		return
	}
	b := &a.batch
	if b.Flags&wire.FlagUncoordinated != 0 {
		a.m.uncoordinated.Add(float64(len(b.Items)))
	}
	h := &held{msg: m, lastTouch: a.now()}
	now := a.now().UnixMilli()
	size := a.cfg.Window.Milliseconds()
	for i := 0; i < len(b.Items); {
		start := window.Start(b.Items[i].EventMs, size)
		j := i
		var sum int64
		for ; j < len(b.Items) && window.Start(b.Items[j].EventMs, size) == start; j++ {
			sum += int64(b.Items[j].Value)
		}
		key := pieceKey{b.Instance, b.Seq(i), b.Seq(j - 1)}
		count := int64(j - i)
		span := window.Span{StartMs: start, EndMs: start + size}
		reason, detail := "", ""
		switch {
		case span.EndMs+a.cfg.MaxLateness.Milliseconds() < now:
			reason, detail = "too_late", fmt.Sprintf("window %s ended more than %s ago", span.Start().Format(time.RFC3339), a.cfg.MaxLateness)
		case span.StartMs > now+a.cfg.MaxFuture.Milliseconds():
			reason, detail = "future", fmt.Sprintf("window %s starts more than %s ahead of this host's clock", span.Start().Format(time.RFC3339), a.cfg.MaxFuture)
		}
		if reason != "" {
			sub := wire.Batch{Flags: b.Flags, Instance: b.Instance, IntervalMs: b.IntervalMs, FirstSeq: b.Seq(i), Items: b.Items[i:j]}
			if !a.rejectPiece(h, reason, detail, key, &sub) {
				return
			}
			i = j
			continue
		}
		bk := a.buckets[start]
		if bk == nil {
			bk = &bucket{span: span, seen: map[pieceKey]*piece{}}
			a.buckets[start] = bk
		}
		if p := bk.seen[key]; p != nil {
			// A copy of a piece waiting for its write: this message waits too.
			a.m.deduplicated.Add(float64(count))
			p.owners = append(p.owners, h)
			h.pending++
			i = j
			continue
		}
		if now >= span.EndMs+a.cfg.Grace.Milliseconds() {
			a.m.late.Add(float64(count))
		}
		if b.Flags&wire.FlagUncoordinated == 0 {
			a.checkCollisions(b, i, j)
		}
		p := &piece{key: key, count: count, sum: sum, owners: []*held{h}}
		bk.seen[key] = p
		bk.pieces = append(bk.pieces, p)
		h.pending++
		i = j
	}
	a.received(b)
	if h.pending == 0 {
		h.finish()
		return
	}
	a.held[h] = struct{}{}
}

// received records b's sequence numbers, and those it says were given up
// before it, in its generator's stream.
func (a *Aggregator) received(b *wire.Batch) {
	if a.cfg.Live == nil {
		return
	}
	s := a.streams[b.Instance]
	if s == nil {
		s = &stream{}
		a.streams[b.Instance] = s
	}
	s.lastSeen = a.now()
	r := seqRun{first: b.FirstSeq - min(b.FirstSeq, uint64(b.GivenUp)), last: b.Seq(len(b.Items) - 1),
		firstMs: b.Items[0].EventMs, throughMs: b.Items[len(b.Items)-1].EventMs}
	if b.Flags&wire.FlagSlotEnd != 0 {
		r.throughMs += int64(b.IntervalMs)
	}
	if s.add(r, a.cfg.Window.Milliseconds()) {
		a.advanced = true
	}
}

// complete reports whether every live generator's stream has passed span:
// nothing more can come for it but what a stopped generator left behind.
func (a *Aggregator) complete(span window.Span) bool {
	if a.cfg.Live == nil {
		return false
	}
	live, ok := a.cfg.Live.Live()
	if !ok || len(live) == 0 {
		// No live generator: all stopped, or a --coordination-prefix that
		// names no group. Either way the grace decides.
		return false
	}
	for id := range live {
		s := a.streams[id]
		if s == nil || !s.passed(span) {
			return false
		}
	}
	return true
}

// trimStreams forgets the streams of generators not heard from for
// MaxLateness: nothing they sent can still be counted.
func (a *Aggregator) trimStreams(now time.Time) {
	if now.Sub(a.trimmedAt) < time.Minute {
		return
	}
	a.trimmedAt = now
	for id, s := range a.streams {
		if now.Sub(s.lastSeen) > a.cfg.MaxLateness {
			delete(a.streams, id)
		}
	}
}

// checkCollisions checks the no-collision guarantee on items i..j-1 of b:
// two generators with the same value in the same slot.
func (a *Aggregator) checkCollisions(b *wire.Batch, i, j int) {
	if a.collisions == nil {
		a.collisions = make(collisionTable, collisionTableSize)
	}
	for _, it := range b.Items[i:j] {
		e := &a.collisions[(uint64(it.EventMs)*0x9E3779B97F4A7C15^uint64(it.Value)*0xC2B2AE3D27D4EB4F)>>50]
		if e.used && e.eventMs == it.EventMs && e.value == it.Value {
			if e.instance != b.Instance {
				a.m.collisions.Inc()
				a.log.WithFields(logrus.Fields{"event_ms": it.EventMs, "value": it.Value}).Error("two generators emitted the same value in the same slot")
			}
			continue
		}
		*e = collisionEntry{eventMs: it.EventMs, value: it.Value, used: true, instance: b.Instance}
	}
}

// reject dead-letters a whole message and FINishes it; when the dead-letter
// topic is unreachable the message is requeued instead, so nothing is lost.
func (a *Aggregator) reject(m Message, reason, detail string, body []byte) {
	a.m.rejected.WithLabelValues(reason).Inc()
	err := a.dead.Reject(reason, detail, body)
	a.touchDue(a.now()) // a dead-letter publish can take seconds
	if err != nil {
		a.log.WithError(err).WithField("reason", reason).Warn("dead-letter publish failed; message requeued")
		m.Requeue(5 * time.Second)
		return
	}
	a.m.deadLettered.WithLabelValues(reason).Inc()
	a.log.WithFields(logrus.Fields{"reason": reason, "detail": detail}).Warn("message rejected and dead-lettered")
	m.Finish()
}

// rejectPiece dead-letters one piece's integers as a batch of their own. On
// failure the whole message is requeued (its pieces leave the open windows)
// and false is returned.
func (a *Aggregator) rejectPiece(h *held, reason, detail string, key pieceKey, sub *wire.Batch) bool {
	if err := a.deadLetter(reason, detail, sub); err != nil {
		a.log.WithError(err).WithField("reason", reason).Warn("dead-letter publish failed; message requeued")
		a.abandon(h)
		return false
	}
	a.log.WithFields(logrus.Fields{"reason": reason, "detail": detail, "instance": key.instance.String(),
		"first_seq": key.first, "integers": len(sub.Items)}).Warn("integers rejected and dead-lettered")
	return true
}

func (a *Aggregator) deadLetter(reason, detail string, sub *wire.Batch) error {
	a.m.rejected.WithLabelValues(reason).Inc()
	body, err := wire.Encode(sub)
	if err == nil {
		err = a.dead.Reject(reason, detail, body)
	}
	a.touchDue(a.now())
	if err != nil {
		return err
	}
	a.m.deadLettered.WithLabelValues(reason).Inc()
	return nil
}

// pieceBatch re-decodes the integers of p from the body of one that
// carries it (only dead letters need them).
func (a *Aggregator) pieceBatch(p *piece) (*wire.Batch, error) {
	var b wire.Batch
	if err := wire.Decode(p.owners[0].msg.Body(), a.cfg.Limits, &b); err != nil {
		return nil, err
	}
	lo, hi := int(p.key.first-b.FirstSeq), int(p.key.last-b.FirstSeq)+1
	if lo < 0 || hi > len(b.Items) || lo >= hi {
		return nil, fmt.Errorf("piece %d..%d is not in its message (%d..)", p.key.first, p.key.last, b.FirstSeq)
	}
	b.Items, b.FirstSeq = b.Items[lo:hi], p.key.first
	return &b, nil
}

// abandon takes a message's share out of the open windows (a piece that
// other copies carry stays) and requeues it.
func (a *Aggregator) abandon(h *held) {
	for start, bk := range a.buckets {
		kept := bk.pieces[:0]
		for _, p := range bk.pieces {
			p.owners = slices.DeleteFunc(p.owners, func(o *held) bool { return o == h })
			if len(p.owners) == 0 {
				delete(bk.seen, p.key)
				continue
			}
			kept = append(kept, p)
		}
		clear(bk.pieces[len(kept):])
		bk.pieces = kept
		if len(kept) == 0 {
			delete(a.buckets, start)
		}
	}
	delete(a.held, h)
	h.requeue(5 * time.Second)
}

// Flush writes every window that is complete or whose grace has passed, and touches messages
// held long, also between writes, so that slow writes never let nsqd time
// out a held message. It returns windowapi.ErrStaleFence when this term
// must end.
func (a *Aggregator) Flush(ctx context.Context) error {
	a.advanced = false
	a.touchDue(a.now())
	a.trimStreams(a.now())
	starts := make([]int64, 0, len(a.buckets))
	for s := range a.buckets {
		starts = append(starts, s)
	}
	slices.Sort(starts)
	for _, s := range starts {
		if ctx.Err() != nil {
			return nil
		}
		bk := a.buckets[s]
		now := a.now()
		if now.Before(bk.retryAt) {
			continue
		}
		early := now.UnixMilli() < bk.span.EndMs+a.cfg.Grace.Milliseconds()
		if early && !a.complete(bk.span) {
			continue
		}
		a.touchDue(now)
		if err := a.write(ctx, bk, early); err != nil {
			if errors.Is(err, windowapi.ErrStaleFence) {
				return err
			}
			bk.backoff = min(max(bk.backoff*2, 100*time.Millisecond), 5*time.Second)
			bk.retryAt = a.now().Add(bk.backoff)
		}
	}
	a.touchDue(a.now())
	return nil
}

// touchDue touches every held message not touched for TouchEvery.
func (a *Aggregator) touchDue(now time.Time) {
	for h := range a.held {
		if now.Sub(h.lastTouch) >= a.cfg.TouchEvery {
			h.msg.Touch()
			h.lastTouch = now
		}
	}
}

func (a *Aggregator) write(ctx context.Context, bk *bucket, early bool) error {
	w := windowapi.Write{End: bk.span.End(), Fence: a.fence, Pieces: make([]windowapi.Piece, len(bk.pieces))}
	for i, p := range bk.pieces {
		w.Pieces[i] = windowapi.Piece{Instance: p.key.instance.String(), FirstSeq: p.key.first, LastSeq: p.key.last, Count: p.count, Sum: p.sum}
	}
	log := a.log.WithField("window", bk.span.Start().Format(time.RFC3339Nano))
	wctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
	res, err := a.writer.Put(wctx, bk.span.Start(), w)
	cancel()
	if err != nil {
		a.m.storeErrors.Inc()
		if errors.Is(err, windowapi.ErrStaleFence) {
			log.WithError(err).Warn("a newer leader owns the store: stepping down")
			return err
		}
		log.WithError(err).Warn("writing the window failed; its messages stay in flight and it is retried")
		return err
	}
	if len(res.Pieces) != len(bk.pieces) {
		a.m.storeErrors.Inc()
		return fmt.Errorf("integer-api answered %d piece outcomes for %d pieces", len(res.Pieces), len(bk.pieces))
	}
	var added int64
	for i, p := range bk.pieces {
		switch res.Pieces[i] {
		case windowapi.Added:
			added += p.count
		case windowapi.Duplicate:
			a.m.deduplicated.Add(float64(p.count))
		case windowapi.Conflict:
			sub, err := a.pieceBatch(p)
			if err == nil {
				err = a.deadLetter("seq_conflict", "sequence range overlaps one already stored with other bounds", sub)
			}
			if err != nil {
				// Keep the window's messages: the next write says conflict again.
				return fmt.Errorf("dead-lettering a conflicting piece: %w", err)
			}
		}
	}
	if end := float64(bk.span.EndMs) / 1000; end >= a.lastEnd {
		a.lastEnd = end
		a.m.lastEnd.Set(end)
		a.m.lastAverage.Set(res.Average)
		a.m.lastCount.Set(float64(res.Count))
	}
	if res.Created {
		a.m.windowsWritten.Inc()
		if early {
			a.m.windowsEarly.Inc()
		}
	} else if added > 0 {
		a.m.windowsAmended.Inc()
	}
	a.m.integersCounted.Add(float64(added))
	a.m.writeLag.Observe(a.now().Sub(bk.span.End()).Seconds())
	for _, p := range bk.pieces {
		for _, h := range p.owners {
			if h.pending--; h.pending == 0 {
				delete(a.held, h)
				h.finish()
			}
		}
	}
	delete(a.buckets, bk.span.StartMs)
	log.WithFields(logrus.Fields{"count": res.Count, "average": res.Average, "added": added, "created": res.Created}).Debug("window stored")
	return nil
}

// requeueAll hands back every message not finished, so another consumer
// (or this one's next term) gets it at once.
func (a *Aggregator) requeueAll() {
	for h := range a.held {
		h.requeue(0)
	}
	a.held = map[*held]struct{}{}
	a.buckets = map[int64]*bucket{}
}
