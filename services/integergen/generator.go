// Package integergen is integer-gen: every --interval, one integer for the
// current slot, drawn through the no-collision coordination (package
// slotlease), queued, and published to NSQ in wire-format batches.
package integergen

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/wire"
)

// Drawer appends this generator's values of a slot (--per-slot of them) to
// dst, or returns false when emitting them could collide.
type Drawer interface {
	Draw(slot int64, dst []uint32) ([]uint32, bool)
}

// Publisher sends one encoded message and returns once nsqd acknowledged it.
type Publisher interface {
	Publish(body []byte) error
}

// chunk is one slot's integers, queued together: a queue operation per slot
// rather than per integer (at --per-slot 250 that was most of the cost).
type chunk struct {
	seq     uint64 // of values[0]; the others follow
	eventMs int64
	flags   uint8
	values  []uint32
	drawnAt time.Time
}

// Generator is the drawing and publishing loop, without Consul and NSQ
// (those are its Drawer and Publisher), so it is tested with fakes.
type Generator struct {
	o      Options
	draw   Drawer
	pub    Publisher
	log    *logrus.Entry
	m      *metrics
	now    func() time.Time
	queue  chan chunk
	queued atomic.Int64 // integers in queue, bounded by --queue-size
	seq    uint64
	rng    *rand.Rand
	drawn  []uint32 // scratch of emit
	// announced is the sequence number after the last batch nsqd
	// acknowledged: the numbers from there to the next batch's first were
	// given up, and that batch says so (wire.Batch.GivenUp).
	announced uint64
	items     []wire.Item // scratch of PublishAll
	body      []byte      // scratch of publish
}

func newGenerator(o Options, d Drawer, p Publisher, m *metrics, log *logrus.Entry) *Generator {
	return &Generator{o: o, draw: d, pub: p, m: m, log: log, now: time.Now,
		queue: make(chan chunk, min(o.QueueSize, 1<<16)), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (g *Generator) intervalMs() int64 { return g.o.Interval.Milliseconds() }

// Tick emits one integer per slot until ctx ends, then closes the queue.
func (g *Generator) Tick(ctx context.Context) {
	defer close(g.queue)
	ms := g.intervalMs()
	last := g.now().UnixMilli() / ms
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := (last + 1) * ms
		timer.Reset(time.Until(time.UnixMilli(next)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cur := g.now().UnixMilli() / ms
		if cur < last+1 {
			cur = last + 1 // woke a hair early: this is still the slot we waited for
		}
		if missed := cur - last - 1; missed > 0 {
			g.m.missed.Add(float64(missed))
		}
		last = cur
		g.emit(cur)
	}
}

func (g *Generator) emit(slot int64) {
	var ok bool
	var flags uint8
	g.drawn, ok = g.draw.Draw(slot, g.drawn[:0])
	if !ok {
		if g.o.OnCoordinationLoss == OnLossPause {
			g.m.paused.Inc()
			return
		}
		g.drawn = g.drawn[:0]
		for range g.o.PerSlot {
			g.drawn = append(g.drawn, g.o.Min+uint32(g.rng.Uint64N(uint64(g.o.Max-g.o.Min)+1)))
		}
		flags = wire.FlagUncoordinated
		g.m.uncoordinated.Add(float64(len(g.drawn)))
	}
	g.m.generated.Add(float64(len(g.drawn)))
	n := len(g.drawn)
	fit := max(0, min(n, g.o.QueueSize-int(g.queued.Load())))
	if fit > 0 {
		c := chunk{seq: g.seq, eventMs: slot * g.intervalMs(), flags: flags, values: append([]uint32(nil), g.drawn[:fit]...), drawnAt: g.now()}
		g.queued.Add(int64(fit))
		select {
		case g.queue <- c:
		default:
			g.queued.Add(-int64(fit))
			fit = 0
		}
	}
	g.seq += uint64(n) // integers that did not fit are given up: their numbers are skipped
	if dropped := n - fit; dropped > 0 {
		g.m.notPublished.WithLabelValues(reasonQueueFull).Add(float64(dropped))
		g.log.WithField("integers", dropped).Warn("queue full (nsqd unreachable for long): integers not published")
	}
}

// PublishAll publishes what Tick queues, in batches of consecutive
// sequence numbers, until the queue is closed and drained or drainTimeout
// passes after ctx ended.
func (g *Generator) PublishAll(ctx context.Context, drainTimeout time.Duration) {
	var carry *chunk
	var deadline time.Time
	for {
		var first chunk
		if carry != nil {
			first, carry = *carry, nil
		} else {
			c, ok := <-g.queue
			if !ok {
				return
			}
			first = c
		}
		if ctx.Err() != nil && deadline.IsZero() {
			deadline = time.Now().Add(drainTimeout)
		}
		g.items = g.items[:0]
		firstSeq, flags, drawnAt := first.seq, first.flags, first.drawnAt
		carry = g.take(first)
		slotDone := carry == nil // the last chunk taken whole: its slot is done
		// Wait up to BatchWait for more (none: take only what is queued).
		var linger <-chan time.Time
		if g.o.BatchWait > 0 {
			linger = time.After(g.o.BatchWait)
		}
	fill:
		for carry == nil && len(g.items) < g.o.BatchMax {
			var c chunk
			var ok bool
			select {
			case c, ok = <-g.queue:
			default:
				if linger == nil {
					break fill
				}
				select {
				case c, ok = <-g.queue:
				case <-linger:
					break fill
				}
			}
			if !ok {
				break fill
			}
			if c.seq != firstSeq+uint64(len(g.items)) || c.flags != flags {
				carry = &c
				break fill
			}
			carry = g.take(c)
			slotDone = carry == nil
		}
		// A chunk is all this generator emits in its slot (what did not fit
		// the queue was given up), so a batch that ends with a whole chunk
		// completes that slot.
		wireFlags := flags
		if slotDone {
			wireFlags |= wire.FlagSlotEnd
		}
		g.publish(ctx, firstSeq, wireFlags, drawnAt, g.items, &deadline, drainTimeout)
	}
}

// take moves as much of c into the batch being built as fits and returns
// the rest, or nil.
func (g *Generator) take(c chunk) *chunk {
	n := min(len(c.values), g.o.BatchMax-len(g.items))
	for _, v := range c.values[:n] {
		g.items = append(g.items, wire.Item{EventMs: c.eventMs, Value: v})
	}
	g.queued.Add(-int64(n))
	if n == len(c.values) {
		return nil
	}
	c.seq += uint64(n)
	c.values = c.values[n:]
	return &c
}

func (g *Generator) publish(ctx context.Context, firstSeq uint64, flags uint8, drawnAt time.Time, items []wire.Item, deadline *time.Time, drainTimeout time.Duration) {
	b := &wire.Batch{Flags: flags, IntervalMs: uint32(g.intervalMs()), FirstSeq: firstSeq, Items: items}
	if firstSeq > g.announced {
		b.GivenUp = uint32(min(firstSeq-g.announced, math.MaxUint32))
	}
	copy(b.Instance[:], g.o.Instance[:])
	body, err := wire.Append(g.body[:0], b)
	if err != nil {
		g.log.WithError(err).Error("encoding a batch failed; integers not published")
		g.m.notPublished.WithLabelValues(reasonUnacknowledged).Add(float64(len(items)))
		return
	}
	g.body = body
	n := float64(len(items))
	log := g.log.WithFields(logrus.Fields{"first_seq": b.FirstSeq, "integers": len(items)})
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := g.pub.Publish(body)
		if err == nil {
			g.m.publishSeconds.Observe(time.Since(start).Seconds())
			g.m.published.Add(n)
			g.m.batchSize.Observe(n)
			g.announced = firstSeq + uint64(len(items))
			if attempt > 1 {
				log.WithField("attempts", attempt).Info("published after retrying")
			}
			return
		}
		g.m.publishFailures.Inc()
		g.body = nil // a publish that failed may still reference it: the next batch gets its own
		if ctx.Err() != nil && deadline.IsZero() {
			*deadline = time.Now().Add(drainTimeout)
		}
		if !deadline.IsZero() && time.Now().After(*deadline) {
			g.m.notPublished.WithLabelValues(reasonShutdown).Add(n)
			log.WithError(err).Error("stopping: integers not published (nsqd did not acknowledge them)")
			return
		}
		if time.Since(drawnAt) > g.o.MaxPublishAge {
			g.m.notPublished.WithLabelValues(reasonUnacknowledged).Add(n)
			log.WithError(err).WithField("max_publish_age", g.o.MaxPublishAge).Error("integers not published: nsqd did not acknowledge them in time")
			return
		}
		if attempt == 1 || attempt%20 == 0 {
			log.WithError(err).WithField("attempt", attempt).Warn("publish failed; retrying with backoff")
		}
		g.m.publishRetries.Inc()
		time.Sleep(backoff)
		backoff = min(backoff*2, 2*time.Second)
	}
}
