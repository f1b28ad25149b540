package intruder_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/intruder"
	"github.com/loopstock/loopstock/internal/testenv"
)

func count(as []intruder.Attempt) (refused int) {
	for _, a := range as {
		if a.Refused {
			refused++
		}
	}
	return refused
}

// As the cluster runs them, nsqd and Redis refuse every attempt, with no
// certificate and with a valid one of another service.
func TestTheSecuredDataPlaneRefusesEveryAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nsqd and redis-server")
	}
	n := testenv.StartSecureNSQ(t)
	n.CreateChannel(t, "integers", "averager")
	r := testenv.StartSecureRedis(t, n.CA)
	targets := intruder.Targets{NSQDTCP: n.NSQDTCP, NSQDGate: n.GateHTTPS, Redis: r.Addr}
	leaf, _ := n.CA.Leaf("integer-api", time.Hour)
	cert, _ := tls.X509KeyPair(leaf, leaf)
	for _, c := range []struct {
		who  string
		cert *tls.Certificate
	}{{"no certificate", nil}, {"integer-api's certificate", &cert}} {
		as := intruder.Run(context.Background(), targets, c.cert)
		if len(as) != 7 || count(as) != len(as) {
			t.Errorf("%s: %d of %d attempts refused, want 7 of 7: %+v", c.who, count(as), len(as), as)
		}
	}
}

// The probe sees a hole: against nsqd and Redis without TLS or a password
// the writes are let in, and a consumer that trusts nsqlookupd subscribes
// to the probe's impostor nsqd.
func TestTheProbeReportsWhatItWasLetIn(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nsqd and redis-server")
	}
	n := testenv.StartNSQ(t)
	r := testenv.StartRedis(t)
	// A consumer that trusts nsqlookupd's answers, even with TLS asked for.
	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval, cfg.TlsV1 = 100*time.Millisecond, true
	cons, err := nsq.NewConsumer("integers", "averager", cfg)
	if err != nil {
		t.Fatal(err)
	}
	cons.SetLogger(nil, nsq.LogLevelError)
	cons.AddHandler(nsq.HandlerFunc(func(*nsq.Message) error { return nil }))
	if err := cons.ConnectToNSQLookupd(n.LookupdHTTP); err != nil {
		t.Fatal(err)
	}
	defer cons.Stop()
	as := intruder.Run(context.Background(), intruder.Targets{NSQDTCP: n.NSQDTCP, NSQDHTTP: n.NSQDHTTP, Redis: r.Addr,
		NSQLookupdTCP: n.LookupdTCP, ImpostorWait: 10 * time.Second}, nil)
	let := map[string]bool{}
	for _, a := range as {
		if !a.Refused {
			let[a.Name] = true
		}
	}
	for _, want := range []string{"nsqd: publish in plaintext (" + n.NSQDTCP + ")", "nsqd: HTTP publish on nsqd's own port (" + n.NSQDHTTP + ")",
		"redis: write in plaintext (" + r.Addr + ")", "nsqlookupd: an impostor nsqd for the averager's channel (" + n.LookupdTCP + ")"} {
		if !let[want] {
			t.Errorf("%q not reported as let in: %+v", want, as)
		}
	}
}
