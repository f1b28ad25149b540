// Package integergen is integer-gen: every --interval, one integer for the
// current slot, drawn through the no-collision coordination (package
// slotlease), queued, and published to NSQ in wire-format batches.
package integergen

import (
	"context"
	"math/rand/v2"
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

type queued struct {
	seq     uint64
	item    wire.Item
	flags   uint8
	drawnAt time.Time
}

// Generator is the drawing and publishing loop, without Consul and NSQ
// (those are its Drawer and Publisher), so it is tested with fakes.
type Generator struct {
	o     Options
	draw  Drawer
	pub   Publisher
	log   *logrus.Entry
	m     *metrics
	now   func() time.Time
	queue chan queued
	seq   uint64
	rng   *rand.Rand
	drawn []uint32 // scratch of emit
}

func newGenerator(o Options, d Drawer, p Publisher, m *metrics, log *logrus.Entry) *Generator {
	return &Generator{o: o, draw: d, pub: p, m: m, log: log, now: time.Now,
		queue: make(chan queued, o.QueueSize), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
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
	now := g.now()
	dropped := 0
	for _, v := range g.drawn {
		q := queued{seq: g.seq, item: wire.Item{EventMs: slot * g.intervalMs(), Value: v}, flags: flags, drawnAt: now}
		g.seq++
		select {
		case g.queue <- q:
		default:
			dropped++
		}
	}
	if dropped > 0 {
		g.m.notPublished.WithLabelValues(reasonQueueFull).Add(float64(dropped))
		g.log.WithField("integers", dropped).Warn("queue full (nsqd unreachable for long): integers not published")
	}
}

// PublishAll publishes what Tick queues, in batches of consecutive
// sequence numbers, until the queue is closed and drained or drainBy
// passes after ctx ended.
func (g *Generator) PublishAll(ctx context.Context, drainTimeout time.Duration) {
	var carry *queued
	var deadline time.Time
	for {
		var first queued
		if carry != nil {
			first, carry = *carry, nil
		} else {
			q, ok := <-g.queue
			if !ok {
				return
			}
			first = q
		}
		if ctx.Err() != nil && deadline.IsZero() {
			deadline = time.Now().Add(drainTimeout)
		}
		batch := []queued{first}
		// Wait up to BatchWait for more (none: take only what is queued).
		var linger <-chan time.Time
		if g.o.BatchWait > 0 {
			linger = time.After(g.o.BatchWait)
		}
	fill:
		for len(batch) < g.o.BatchMax {
			var q queued
			var ok bool
			select {
			case q, ok = <-g.queue:
			default:
				if linger == nil {
					break fill
				}
				select {
				case q, ok = <-g.queue:
				case <-linger:
					break fill
				}
			}
			if !ok {
				break fill
			}
			prev := batch[len(batch)-1]
			if q.seq != prev.seq+1 || q.flags != prev.flags {
				carry = &q
				break fill
			}
			batch = append(batch, q)
		}
		g.publish(ctx, batch, &deadline, drainTimeout)
	}
}

func (g *Generator) publish(ctx context.Context, batch []queued, deadline *time.Time, drainTimeout time.Duration) {
	b := &wire.Batch{Flags: batch[0].flags, IntervalMs: uint32(g.intervalMs()), FirstSeq: batch[0].seq, Items: make([]wire.Item, len(batch))}
	copy(b.Instance[:], g.o.Instance[:])
	for i, q := range batch {
		b.Items[i] = q.item
	}
	body, err := wire.Encode(b)
	if err != nil {
		g.log.WithError(err).Error("encoding a batch failed; integers not published")
		g.m.notPublished.WithLabelValues(reasonUnacknowledged).Add(float64(len(batch)))
		return
	}
	n := float64(len(batch))
	log := g.log.WithFields(logrus.Fields{"first_seq": b.FirstSeq, "integers": len(batch)})
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := g.pub.Publish(body)
		if err == nil {
			g.m.publishSeconds.Observe(time.Since(start).Seconds())
			g.m.published.Add(n)
			g.m.batchSize.Observe(n)
			if attempt > 1 {
				log.WithField("attempts", attempt).Info("published after retrying")
			}
			return
		}
		g.m.publishFailures.Inc()
		if ctx.Err() != nil && deadline.IsZero() {
			*deadline = time.Now().Add(drainTimeout)
		}
		if !deadline.IsZero() && time.Now().After(*deadline) {
			g.m.notPublished.WithLabelValues(reasonShutdown).Add(n)
			log.WithError(err).Error("stopping: integers not published (nsqd did not acknowledge them)")
			return
		}
		if time.Since(batch[0].drawnAt) > g.o.MaxPublishAge {
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
