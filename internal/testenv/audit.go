package testenv

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/nsqtls"

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
	a.consumer = newAuditConsumer(t, topic, channel, nsqtls.Client{}, func(m *nsq.Message) error {
		if a.record(m.Body) && a.Tee != nil {
			select {
			case a.Tee <- append([]byte(nil), m.Body...):
			default:
			}
		}
		return nil
	})
	if err := a.consumer.ConnectToNSQD(nsqdTCP); err != nil {
		t.Fatal(err)
	}
	return a
}

// StartAuditLookupd is StartAudit on every nsqd that the nsqlookupd HTTP
// addresses list, polled every second: an nsqd that comes back (on another
// port) is consumed again, its backlog included.
func StartAuditLookupd(t testing.TB, lookupdHTTP []string, topic, channel string) *Audit {
	t.Helper()
	return StartAuditLookupdAs(t, lookupdHTTP, topic, channel, nsqtls.Client{})
}

// StartAuditLookupdAs is StartAuditLookupd with auth's credentials (nsqd
// with TLS and AUTH: an auditor's certificate and secret).
func StartAuditLookupdAs(t testing.TB, lookupdHTTP []string, topic, channel string, auth nsqtls.Client) *Audit {
	t.Helper()
	a := &Audit{seen: map[auditKey]Record{}}
	a.consumer = newAuditConsumer(t, topic, channel, auth, func(m *nsq.Message) error {
		a.record(m.Body)
		return nil
	})
	if err := a.consumer.ConnectToNSQLookupds(lookupdHTTP); err != nil {
		t.Fatal(err)
	}
	return a
}

func newAuditConsumer(t testing.TB, topic, channel string, auth nsqtls.Client, handle nsq.HandlerFunc) *nsq.Consumer {
	cfg := nsq.NewConfig()
	auth.Apply(cfg)
	cfg.MaxInFlight = 1000
	cfg.LookupdPollInterval = time.Second // also the reconnect delay after nsqd restarts
	cfg.OutputBufferSize = -1             // as the averager: nothing waits in nsqd's write buffer
	cfg.OutputBufferTimeout = -1
	c, err := nsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(nil, nsq.LogLevelError)
	c.AddHandler(handle)
	t.Cleanup(c.Stop)
	return c
}

// record keeps every integer of a decodable message once; junk is left to
// the pipeline's dead-letter topic, tested elsewhere.
func (a *Audit) record(body []byte) bool {
	var b wire.Batch
	if err := wire.Decode(body, wire.Limits{Min: 0, Max: ^uint32(0)}, &b); err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, it := range b.Items {
		a.seen[auditKey{b.Instance, b.Seq(i)}] = Record{Instance: b.Instance, Seq: b.Seq(i), Value: it.Value, EventMs: it.EventMs, Flags: b.Flags}
	}
	return true
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

// AddLookupds adds nsqlookupd HTTP addresses to poll (those it has are
// kept): on a cluster whose nsqlookupd move, the audit follows them.
func (a *Audit) AddLookupds(lookupdHTTP []string) error {
	for _, addr := range lookupdHTTP {
		if err := a.consumer.ConnectToNSQLookupd(addr); err != nil && !errors.Is(err, nsq.ErrAlreadyConnected) {
			return err
		}
	}
	return nil
}
