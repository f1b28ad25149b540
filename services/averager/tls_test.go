package averager

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

// Anyone on the network can register an nsqd with nsqlookupd, and go-nsq
// starts TLS only when the server offers it: an impostor that does not
// would get the averager's subscription in plaintext, where no certificate
// is checked. With TLS the averager connects only to the nsqd that nsqlookupd
// names and Consul lists (registering nsqd there takes Nomad's token).
func TestTheAveragerSubscribesOnlyToNSQDThatConsulLists(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and nsqd")
	}
	c := testenv.StartConsul(t)
	n := testenv.StartSecureNSQ(t)
	n.RegisterIn(t, c)
	impostor := testenv.StartImpostorNSQD(t, n.LookupdTCP)
	n.CreateChannel(t, "integers", "averager")
	impostor.CreateChannel(t, "integers", "averager")
	testenv.Eventually(t, 20*time.Second, "nsqlookupd naming both nsqd for the topic", func() bool {
		var lookup struct {
			Producers []struct{} `json:"producers"`
		}
		code, err := testenv.GetJSON("http://"+n.LookupdHTTP+"/lookup?topic=integers", &lookup)
		return err == nil && code == 200 && len(lookup.Producers) == 2
	})

	f := testenv.CertFiles(t, n.CA, Name)
	httpAddr := testenv.Addr(testenv.FreePort(t))
	o, err := ParseArgs([]string{"--write-token", "secret-token", "--consul-addr", c.HTTPAddr, "--http-addr", httpAddr,
		"--lookupd-poll-interval", "200ms", "--tls-cert-file", f.Cert, "--tls-roots-file", f.Roots, "--nsq-auth-secret", n.Secrets[Name]})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, logging.Discard()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	impostorRefused := func() {
		t.Helper()
		if cl := impostor.Channel(t, "integers", "averager").Clients; len(cl) > 0 {
			t.Fatalf("the averager subscribed to an nsqd that only nsqlookupd lists (tls=%v authed=%v): a downgrade to plaintext", cl[0].TLS, cl[0].Authed)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the averager subscribed to Consul's nsqd over TLS and authenticated, and the impostor refused twice", func() bool {
		impostorRefused()
		real := n.Channel(t, "integers", "averager").Clients
		return len(real) == 1 && real[0].TLS && real[0].Authed && refusedNSQD(httpAddr) >= 2
	})
	impostorRefused()
}

// refusedNSQD is the averager's count of nsqd refused for not being in
// Consul (0 while the series is missing).
func refusedNSQD(httpAddr string) float64 {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0
	}
	v, _ := testenv.SeriesValue(families, "integeraverage_cal_nsqd_refused_total")
	return v
}
