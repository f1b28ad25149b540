package nsqdgate_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// publish publishes one message with client's credentials (nil error: nsqd
// acknowledged it).
func publish(t *testing.T, addr, topic string, client nsqtls.Client, edit func(*nsq.Config)) error {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.DialTimeout = 2 * time.Second
	client.Apply(cfg)
	if edit != nil {
		edit(cfg)
	}
	p, err := nsq.NewProducer(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.SetLogger(nil, nsq.LogLevelError)
	defer p.Stop()
	return p.Publish(topic, []byte("probe"))
}

// subscribe tries to take messages of topic/channel with client's
// credentials: nil once a message arrived, else why none could.
func subscribe(t *testing.T, addr, topic, channel string, client nsqtls.Client, edit func(*nsq.Config)) error {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.DialTimeout = 2 * time.Second
	client.Apply(cfg)
	if edit != nil {
		edit(cfg)
	}
	c, err := nsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var why atomic.Value
	c.SetLogger(logSink(func(line string) {
		if strings.Contains(line, "ERR") || strings.Contains(line, "error") {
			why.CompareAndSwap(nil, line)
		}
	}), nsq.LogLevelWarning)
	got := make(chan struct{}, 1)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}))
	defer c.Stop()
	if err := c.ConnectToNSQD(addr); err != nil {
		return err
	}
	select {
	case <-got:
		return nil
	case <-time.After(3 * time.Second):
		if w, ok := why.Load().(string); ok {
			return errors.New(w)
		}
		return errors.New("no message within 3s")
	}
}

// logSink sends go-nsq's log lines to f.
type logSink func(string)

func (f logSink) Output(_ int, s string) error { f(s); return nil }

func TestNSQDLetsInOnlyTheServicesGrantedOnIt(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nsqd")
	}
	s := testenv.StartSecureNSQ(t)
	gen, avg := s.Client(t, "integer-gen"), s.Client(t, "integeraverage-cal")
	api := s.Client(t, "integer-api") // a valid certificate of a service with no grant
	other, err := devca.New(testenv.TrustDomain, "dc1")
	if err != nil {
		t.Fatal(err)
	}
	strangerLeaf, _ := other.Leaf("integer-gen", time.Hour)
	strangerCert, _ := tls.X509KeyPair(strangerLeaf, strangerLeaf)

	// The positive control first: the topic exists and holds a message for the averager's channel.
	if err := publish(t, s.NSQDTCP, "integers", gen, nil); err != nil {
		t.Fatalf("integer-gen with its certificate and secret could not publish: %v", err)
	}
	s.CreateChannel(t, "integers", "averager")
	if err := publish(t, s.NSQDTCP, "integers", gen, nil); err != nil {
		t.Fatalf("integer-gen with its certificate and secret could not publish: %v", err)
	}

	refused := []struct {
		name   string
		client nsqtls.Client
		edit   func(*nsq.Config)
	}{
		{"plain TCP", nsqtls.Client{}, nil},
		{"TLS without a certificate", gen, func(c *nsq.Config) {
			c.TlsConfig.GetClientCertificate = nil
		}},
		{"a certificate of another CA", gen, func(c *nsq.Config) {
			c.TlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }
		}},
		{"a valid certificate of a service without a grant", api, nil},
		{"a valid certificate with a guessed secret", api, func(c *nsq.Config) { c.AuthSecret = "guessed-secret-0123456789" }},
	}
	for _, r := range refused {
		t.Run("publish: "+r.name, func(t *testing.T) {
			if err := publish(t, s.NSQDTCP, "integers", r.client, r.edit); err == nil {
				t.Error("the publish was acknowledged")
			}
		})
		t.Run("subscribe: "+r.name, func(t *testing.T) {
			if err := subscribe(t, s.NSQDTCP, "integers", "averager", r.client, r.edit); err == nil {
				t.Error("a message was delivered")
			}
		})
	}
	t.Run("publish: the averager, granted only to subscribe to integers", func(t *testing.T) {
		err := publish(t, s.NSQDTCP, "integers", avg, nil)
		if err == nil || !strings.Contains(err.Error(), "E_UNAUTHORIZED") {
			t.Errorf("publish: %v, want E_UNAUTHORIZED", err)
		}
	})
	t.Run("subscribe: integer-gen, granted only to publish", func(t *testing.T) {
		if err := subscribe(t, s.NSQDTCP, "integers", "averager", gen, nil); err == nil {
			t.Error("a message was delivered")
		}
	})
	t.Run("subscribe: the averager on a channel of its own", func(t *testing.T) {
		if err := subscribe(t, s.NSQDTCP, "integers", "tap", avg, nil); err == nil {
			t.Error("a message was delivered")
		}
	})

	// Not one refused attempt took a message: both probes still wait for the averager.
	if err := subscribe(t, s.NSQDTCP, "integers", "averager", avg, nil); err != nil {
		t.Fatalf("the averager with its certificate and secret could not subscribe: %v", err)
	}
}

func TestTheHTTPAPIIsReachableOnlyThroughTheGate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nsqd")
	}
	s := testenv.StartSecureNSQ(t)
	base := "https://" + s.GateHTTPS
	call := func(client *http.Client, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	as := func(service string) *http.Client { return s.Client(t, service).HTTPClient(3 * time.Second) }
	noCert := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	// nsqd's own HTTP listener is on loopback only, not on the host's address.
	if h, _, _ := net.SplitHostPort(s.NSQDHTTP); !net.ParseIP(h).IsLoopback() {
		t.Errorf("nsqd's HTTP API listens on %s, want loopback", s.NSQDHTTP)
	}
	plain := &http.Client{Timeout: 3 * time.Second}
	if resp, err := plain.Get("http://" + s.GateHTTPS + "/stats"); err == nil {
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the gate: %s, want 400 (an HTTP request to an HTTPS server)", resp.Status)
		}
		resp.Body.Close()
	}

	cases := []struct {
		who          string
		client       *http.Client
		method, path string
		want         int
	}{
		{"no certificate", noCert, "GET", "/ping", 200}, // the health check
		{"no certificate", noCert, "GET", "/stats", 401},
		{"no certificate", noCert, "POST", "/topic/delete?topic=integers", 401},
		{"integer-api (no grant: refused at the handshake)", as("integer-api"), "GET", "/stats", 0},
		{"integer-gen", as("integer-gen"), "POST", "/topic/create?topic=integers", 200},
		{"integer-gen", as("integer-gen"), "POST", "/channel/create?topic=integers&channel=averager", 200},
		{"integer-gen", as("integer-gen"), "POST", "/channel/create?topic=integers&channel=tap", 403},
		{"integer-gen", as("integer-gen"), "POST", "/topic/create?topic=other", 403},
		{"integer-gen", as("integer-gen"), "POST", "/pub?topic=integers", 403},
		{"integer-gen", as("integer-gen"), "GET", "/stats", 403},
		{"integeraverage-cal", as("integeraverage-cal"), "GET", "/stats?format=json", 200},
		{"integeraverage-cal", as("integeraverage-cal"), "POST", "/topic/delete?topic=integers", 403},
		{"integeraverage-cal", as("integeraverage-cal"), "POST", "/channel/empty?topic=integers&channel=averager", 403},
	}
	for _, c := range cases {
		if got, body := call(c.client, c.method, c.path); got != c.want {
			t.Errorf("%s: %s %s answered %d %q, want %d", c.who, c.method, c.path, got, strings.TrimSpace(body), c.want)
		}
	}
	// A certificate of another CA does not even finish the handshake.
	other, _ := devca.New(testenv.TrustDomain, "dc1")
	files, _ := other.Files(t.TempDir(), "integeraverage-cal", time.Hour)
	stranger, err := tlsid.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stranger.ClientConfig("nsqd")
	cfg.VerifyConnection = nil // the stranger trusts anything; the gate must not
	if code, body := call(&http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, "GET", "/stats"); code != 0 {
		t.Errorf("a certificate of another CA: %d %q, want the handshake refused", code, body)
	}
}

// nsqlookupd accepts any registration, so a fake nsqd can be listed: a
// client sends it nothing, since its certificate does not say nsqd.
func TestAClientRefusesAnNSQDWhoseCertificateIsNotNSQDs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nsqd")
	}
	s := testenv.StartSecureNSQ(t)
	fakeFiles := testenv.CertFiles(t, s.CA, "integer-api") // a valid leaf of another service
	fake := testenv.StartNSQTLS(t, testenv.NSQDTLS{Cert: fakeFiles.Cert, Roots: fakeFiles.Roots, AuthAddr: testenv.Addr(testenv.FreePort(t))})
	err := publish(t, fake.NSQDTCP, "integers", s.Client(t, "integer-gen"), nil)
	if err == nil || !strings.Contains(err.Error(), `service "integer-api" may not talk to`) {
		t.Errorf("publishing to an nsqd holding integer-api's certificate: %v, want the server refused by name", err)
	}
	// The positive control: the real nsqd.
	if err := publish(t, s.NSQDTCP, "integers", s.Client(t, "integer-gen"), nil); err != nil {
		t.Errorf("publishing to the real nsqd: %v", err)
	}
}
