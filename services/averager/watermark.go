package averager

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/watch"
	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/wire"
)

// A window is complete, and written at once, when every live generator's
// stream is known to have passed it (docs/design.md, "Watermarks"). A
// generator numbers its integers consecutively and emits its slots in
// order, so along its sequence numbers the event times never go back. A
// run of sequence numbers received without a gap, whose first integer is
// before a window's start and whose last is at or past its end, therefore
// holds every integer that generator emitted in the window: those before
// the run are at or before its first integer, those after it at or past
// its last (or past its last integer's slot, when the generator said that
// slot was done: wire.FlagSlotEnd).

// seqRun is a run of consecutive sequence numbers received from one
// generator: the event time of its first integer, and the time up to which
// the generator's stream is complete at its last (that integer's event
// time, or the end of its slot when the batch said the slot was done).
type seqRun struct {
	first, last        uint64
	firstMs, throughMs int64
}

// stream is what the averager knows of one generator instance's stream:
// its runs, sorted and disjoint (normally one).
type stream struct {
	runs     []seqRun
	lastSeen time.Time
}

// maxRuns bounds a stream whose gaps never fill (messages lost for good
// with no notice): the oldest runs are forgotten, which only delays
// windows to --grace.
const maxRuns = 256

// add records a run of sequence numbers, and reports whether the stream's
// newest point moved into a later window of size ms.
func (s *stream) add(r seqRun, size int64) (advanced bool) {
	newest := int64(-1)
	if n := len(s.runs); n > 0 {
		newest = s.runs[n-1].throughMs
	}
	// Insert in order, then merge what overlaps or touches.
	i := 0
	for i < len(s.runs) && s.runs[i].first < r.first {
		i++
	}
	s.runs = append(s.runs, seqRun{})
	copy(s.runs[i+1:], s.runs[i:])
	s.runs[i] = r
	merged := s.runs[:1]
	for _, x := range s.runs[1:] {
		m := &merged[len(merged)-1]
		if x.first <= m.last+1 {
			if x.last > m.last {
				m.last = x.last
			}
			m.firstMs, m.throughMs = min(m.firstMs, x.firstMs), max(m.throughMs, x.throughMs)
			continue
		}
		merged = append(merged, x)
	}
	s.runs = merged
	if len(s.runs) > maxRuns {
		s.runs = append(s.runs[:0], s.runs[len(s.runs)-maxRuns:]...)
	}
	last := s.runs[len(s.runs)-1].throughMs
	return newest < 0 || window.Start(last, size) > window.Start(newest, size)
}

// passed reports whether every integer of this stream in span has been
// received (or was given up).
func (s *stream) passed(span window.Span) bool {
	for _, r := range s.runs {
		if r.firstMs < span.StartMs && r.throughMs >= span.EndMs {
			return true
		}
	}
	return false
}

// LiveGenerators says which generator instances are live, or false when
// that is not known (then windows wait for --grace).
type LiveGenerators interface {
	Live() (map[wire.InstanceID]struct{}, bool)
}

// generatorWatch follows the generators' coordination keys in Consul
// (package slotlease): an index key locked by a session is a live
// generator, and its value names the instance. A generator whose lease was
// released or whose session ended drops out of the set.
type generatorWatch struct {
	kv     *consul.KV
	prefix string
	log    *logrus.Entry
	cur    atomic.Pointer[map[wire.InstanceID]struct{}]
}

func followGenerators(ctx context.Context, client *consul.Client, prefix string, log *logrus.Entry) *generatorWatch {
	w := &generatorWatch{kv: client.KV(), prefix: strings.TrimSuffix(prefix, "/") + "/index/", log: log.WithField("component", "generators")}
	go w.run(ctx)
	return w
}

func (w *generatorWatch) Live() (map[wire.InstanceID]struct{}, bool) {
	p := w.cur.Load()
	if p == nil {
		return nil, false
	}
	return *p, true
}

const liveWait = 30 * time.Second

func (w *generatorWatch) run(ctx context.Context) {
	failing := false
	o := watch.Options{Wait: liveWait, Backoff: watch.Backoff{First: time.Second, Max: time.Second},
		OnError: func(err error, _ time.Duration) error {
			// Not knowing who is live, windows wait for their grace.
			w.cur.Store(nil)
			if !failing {
				w.log.WithError(err).Warn("reading the live generators from consul; windows wait for --grace meanwhile")
			}
			failing = true
			return nil
		}}
	watch.Run(ctx, o, func(q *consul.QueryOptions) (consul.KVPairs, *consul.QueryMeta, error) {
		return w.kv.List(w.prefix, q)
	}, func(pairs consul.KVPairs) (watch.Next, error) {
		failing = false
		w.cur.Store(liveSet(pairs))
		return watch.WaitForChange, nil
	})
}

// liveSet names the generators whose index key is locked, or is nil when
// one of them cannot be named: it could hold any window.
func liveSet(pairs consul.KVPairs) *map[wire.InstanceID]struct{} {
	live := map[wire.InstanceID]struct{}{}
	for _, p := range pairs {
		if p.Session == "" {
			continue
		}
		var v struct {
			Instance string `json:"instance"`
		}
		var id wire.InstanceID
		err := json.Unmarshal(p.Value, &v)
		var b []byte
		if err == nil {
			b, err = hex.DecodeString(v.Instance)
		}
		if err != nil || len(b) != len(id) {
			return nil
		}
		copy(id[:], b)
		live[id] = struct{}{}
	}
	return &live
}
