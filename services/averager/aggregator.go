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
	"sort"
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
}

// held is one message until every piece of it is stored.
type held struct {
	msg       Message
	pending   int
	lastTouch time.Time
}

type piece struct {
	p     windowapi.Piece
	key   pieceKey
	from  *held
	batch wire.Batch // its integers alone, for the dead-letter topic
}

type slotValue struct {
	eventMs int64
	value   uint32
}

type pieceKey struct {
	instance wire.InstanceID
	first    uint64
}

type bucket struct {
	span   window.Span
	pieces []*piece
	seen   map[pieceKey]bool
	// slotValues finds collisions: who emitted a value in a slot.
	slotValues map[slotValue]wire.InstanceID
	retryAt    time.Time
	backoff    time.Duration
}

// Aggregator owns all windowing state; one goroutine runs it.
type Aggregator struct {
	cfg    Config
	fence  uint64
	writer Writer
	dead   DeadLetter
	m      *metrics
	log    *logrus.Entry
	now    func() time.Time

	buckets map[int64]*bucket
	batch   wire.Batch
	lastEnd float64 // newest window stored, for the gauges
}

func newAggregator(cfg Config, fence uint64, w Writer, d DeadLetter, m *metrics, log *logrus.Entry) *Aggregator {
	return &Aggregator{cfg: cfg, fence: fence, writer: w, dead: d, m: m, log: log, now: time.Now, buckets: map[int64]*bucket{}}
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
	inst := b.Instance.String()
	for i := 0; i < len(b.Items); {
		start := window.Start(b.Items[i].EventMs, size)
		j := i
		var sum int64
		for ; j < len(b.Items) && window.Start(b.Items[j].EventMs, size) == start; j++ {
			sum += int64(b.Items[j].Value)
		}
		p := &piece{
			p:    windowapi.Piece{Instance: inst, FirstSeq: b.Seq(i), LastSeq: b.Seq(j - 1), Count: int64(j - i), Sum: sum},
			key:  pieceKey{b.Instance, b.Seq(i)},
			from: h,
			batch: wire.Batch{Flags: b.Flags, Instance: b.Instance, IntervalMs: b.IntervalMs, FirstSeq: b.Seq(i),
				Items: append([]wire.Item(nil), b.Items[i:j]...)},
		}
		i = j
		span := window.Span{StartMs: start, EndMs: start + size}
		switch {
		case span.EndMs+a.cfg.MaxLateness.Milliseconds() < now:
			if !a.rejectPiece(h, "too_late", fmt.Sprintf("window %s ended more than %s ago", span.Start().Format(time.RFC3339), a.cfg.MaxLateness), p) {
				return
			}
			continue
		case span.StartMs > now+a.cfg.MaxFuture.Milliseconds():
			if !a.rejectPiece(h, "future", fmt.Sprintf("window %s starts more than %s ahead of this host's clock", span.Start().Format(time.RFC3339), a.cfg.MaxFuture), p) {
				return
			}
			continue
		}
		bk := a.buckets[start]
		if bk == nil {
			bk = &bucket{span: span, seen: map[pieceKey]bool{}, slotValues: map[slotValue]wire.InstanceID{}}
			a.buckets[start] = bk
		}
		if bk.seen[p.key] {
			a.m.deduplicated.Add(float64(p.p.Count))
			continue
		}
		if now >= span.EndMs+a.cfg.Grace.Milliseconds() {
			a.m.late.Add(float64(p.p.Count))
		}
		bk.seen[p.key] = true
		bk.pieces = append(bk.pieces, p)
		if b.Flags&wire.FlagUncoordinated == 0 {
			a.countCollisions(bk, p)
		}
		h.pending++
	}
	if h.pending == 0 {
		m.Finish()
	}
}

// countCollisions checks the no-collision guarantee on what passes by:
// two generators with the same value in the same slot. It sees integers of
// one open window, so a collision with an integer already written is missed.
func (a *Aggregator) countCollisions(bk *bucket, p *piece) {
	for _, it := range p.batch.Items {
		k := slotValue{it.EventMs, it.Value}
		if other, ok := bk.slotValues[k]; ok && other != p.key.instance {
			a.m.collisions.Inc()
			a.log.WithFields(logrus.Fields{"event_ms": it.EventMs, "value": it.Value}).Error("two generators emitted the same value in the same slot")
			continue
		}
		bk.slotValues[k] = p.key.instance
	}
}

// reject dead-letters a whole message and FINishes it; when the dead-letter
// topic is unreachable the message is requeued instead, so nothing is lost.
func (a *Aggregator) reject(m Message, reason, detail string, body []byte) {
	a.m.rejected.WithLabelValues(reason).Inc()
	if err := a.dead.Reject(reason, detail, body); err != nil {
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
func (a *Aggregator) rejectPiece(h *held, reason, detail string, p *piece) bool {
	if err := a.deadLetterPiece(reason, detail, p); err != nil {
		a.log.WithError(err).WithField("reason", reason).Warn("dead-letter publish failed; message requeued")
		a.abandon(h)
		return false
	}
	a.log.WithFields(logrus.Fields{"reason": reason, "detail": detail, "instance": p.p.Instance,
		"first_seq": p.p.FirstSeq, "integers": p.p.Count}).Warn("integers rejected and dead-lettered")
	return true
}

func (a *Aggregator) deadLetterPiece(reason, detail string, p *piece) error {
	a.m.rejected.WithLabelValues(reason).Inc()
	body, err := wire.Encode(&p.batch)
	if err == nil {
		err = a.dead.Reject(reason, detail, body)
	}
	if err != nil {
		return err
	}
	a.m.deadLettered.WithLabelValues(reason).Inc()
	return nil
}

// abandon removes a message's pieces from open windows and requeues it.
func (a *Aggregator) abandon(h *held) {
	for start, bk := range a.buckets {
		kept := bk.pieces[:0]
		for _, p := range bk.pieces {
			if p.from == h {
				delete(bk.seen, p.key)
				continue
			}
			kept = append(kept, p)
		}
		bk.pieces = kept
		if len(kept) == 0 {
			delete(a.buckets, start)
		}
	}
	h.pending = -1
	h.msg.Requeue(5 * time.Second)
}

// Flush writes every window whose grace has passed, and touches messages
// held long. It returns windowapi.ErrStaleFence when this term must end.
func (a *Aggregator) Flush(ctx context.Context) error {
	now := a.now()
	starts := make([]int64, 0, len(a.buckets))
	for s := range a.buckets {
		starts = append(starts, s)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, s := range starts {
		bk := a.buckets[s]
		if now.UnixMilli() < bk.span.EndMs+a.cfg.Grace.Milliseconds() || now.Before(bk.retryAt) {
			a.touch(bk, now)
			continue
		}
		if err := a.write(ctx, bk, now); err != nil {
			if errors.Is(err, windowapi.ErrStaleFence) {
				return err
			}
			bk.backoff = min(max(bk.backoff*2, 100*time.Millisecond), 5*time.Second)
			bk.retryAt = now.Add(bk.backoff)
			a.touch(bk, now)
		}
	}
	return nil
}

func (a *Aggregator) touch(bk *bucket, now time.Time) {
	for _, p := range bk.pieces {
		if h := p.from; h.pending > 0 && now.Sub(h.lastTouch) >= a.cfg.TouchEvery {
			h.msg.Touch()
			h.lastTouch = now
		}
	}
}

func (a *Aggregator) write(ctx context.Context, bk *bucket, now time.Time) error {
	w := windowapi.Write{End: bk.span.End(), Fence: a.fence, Pieces: make([]windowapi.Piece, len(bk.pieces))}
	for i, p := range bk.pieces {
		w.Pieces[i] = p.p
	}
	log := a.log.WithField("window", bk.span.Start().Format(time.RFC3339Nano))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
			added += p.p.Count
		case windowapi.Duplicate:
			a.m.deduplicated.Add(float64(p.p.Count))
		case windowapi.Conflict:
			if err := a.deadLetterPiece("seq_conflict", "sequence range overlaps one already stored with other bounds", p); err != nil {
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
	} else if added > 0 {
		a.m.windowsAmended.Inc()
	}
	a.m.integersCounted.Add(float64(added))
	a.m.writeLag.Observe(now.Sub(bk.span.End()).Seconds())
	for _, p := range bk.pieces {
		if p.from.pending--; p.from.pending == 0 {
			p.from.msg.Finish()
		}
	}
	delete(a.buckets, bk.span.StartMs)
	log.WithFields(logrus.Fields{"count": res.Count, "average": res.Average, "added": added, "created": res.Created}).Debug("window stored")
	return nil
}

// requeueAll hands back every message not finished, so another consumer
// (or this one's next term) gets it at once.
func (a *Aggregator) requeueAll() {
	for _, bk := range a.buckets {
		for _, p := range bk.pieces {
			if p.from.pending > 0 {
				p.from.pending = -1
				p.from.msg.Requeue(0)
			}
		}
	}
	a.buckets = map[int64]*bucket{}
}
