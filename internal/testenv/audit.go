package testenv

import (
	"sync"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/wire"
)

// Record is one integer as the audit consumer saw it.
type Record struct {
	Instance wire.InstanceID
	Seq      uint64
	Value    uint32
	EventMs  int64
	Flags    uint8
}

// Audit is an independent consumer on its own channel: it records every
// integer nsqd accepted, once per (instance, sequence), whatever the
// averager does.
type Audit struct {
	mu       sync.Mutex
	seen     map[auditKey]Record
	consumer *nsq.Consumer
	// Tee, when set before messages arrive, receives a copy of some
	// decodable messages (never blocking), for tests that re-publish them.
	Tee chan []byte
}

type auditKey struct {
	instance wire.InstanceID
	seq      uint64
}

// StartAudit consumes topic on channel from nsqd directly.
func StartAudit(t testing.TB, nsqdTCP, topic, channel string) *Audit {
	return StartAuditWithTee(t, nsqdTCP, topic, channel, nil)
}

// StartAuditWithTee is StartAudit with a Tee channel.
func StartAuditWithTee(t testing.TB, nsqdTCP, topic, channel string, tee chan []byte) *Audit {
	t.Helper()
	a := &Audit{seen: map[auditKey]Record{}, Tee: tee}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 1000
	cfg.LookupdPollInterval = time.Second // also the reconnect delay after nsqd restarts
	cfg.OutputBufferSize = -1             // as the averager: nothing waits in nsqd's write buffer
	cfg.OutputBufferTimeout = -1
	c, err := nsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(nil, nsq.LogLevelError)
	lim := wire.Limits{Min: 0, Max: ^uint32(0)}
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		var b wire.Batch
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := wire.Decode(m.Body, lim, &b); err != nil {
			return nil // junk: the pipeline's dead-letter topic is tested elsewhere
		}
		if a.Tee != nil {
			select {
			case a.Tee <- append([]byte(nil), m.Body...):
			default:
			}
		}
		for i, it := range b.Items {
			a.seen[auditKey{b.Instance, b.Seq(i)}] = Record{Instance: b.Instance, Seq: b.Seq(i), Value: it.Value, EventMs: it.EventMs, Flags: b.Flags}
		}
		return nil
	}))
	if err := c.ConnectToNSQD(nsqdTCP); err != nil {
		t.Fatal(err)
	}
	a.consumer = c
	t.Cleanup(c.Stop)
	return a
}

// Totals is the count and sum of one window.
type Totals struct{ Count, Sum int64 }

// Windows groups what was seen by window of size.
func (a *Audit) Windows(size time.Duration) map[int64]Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[int64]Totals{}
	for _, r := range a.seen {
		s := window.Start(r.EventMs, size.Milliseconds())
		w := out[s]
		w.Count++
		w.Sum += int64(r.Value)
		out[s] = w
	}
	return out
}

// Records returns a copy of every distinct integer seen.
func (a *Audit) Records() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Record, 0, len(a.seen))
	for _, r := range a.seen {
		out = append(out, r)
	}
	return out
}
