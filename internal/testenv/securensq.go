package testenv

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/tlsid"
	"github.com/loopstock/loopstock/services/nsqdgate"
)

// TrustDomain is the test CA's trust domain, shaped like Consul's.
const TrustDomain = "6a5ad6b0-1f1b-4d77-9f3e-0a1b2c3d4e5f.consul"

// NewCA makes a throwaway Connect-shaped CA (datacenter dc1).
func NewCA(t testing.TB) *devca.CA {
	t.Helper()
	ca, err := devca.New(TrustDomain, "dc1")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// CertFiles writes service's leaf of ca (valid an hour) and ca's roots
// into a directory of their own.
func CertFiles(t testing.TB, ca *devca.CA, service string) tlsid.Files {
	t.Helper()
	f, err := ca.Files(t.TempDir(), service, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// CertSource is CertFiles loaded.
func CertSource(t testing.TB, ca *devca.CA, service string) *tlsid.Source {
	t.Helper()
	s, err := tlsid.Load(CertFiles(t, ca, service))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SecureNSQ is nsqlookupd and an nsqd as the cluster runs them: TLS with
// client certificates, AUTH, and nsqd-gate in front of the HTTP API.
type SecureNSQ struct {
	*NSQ
	CA        *devca.CA
	GateHTTPS string            // nsqd-gate's HTTPS address
	Secrets   map[string]string // AUTH secret by service
}

// The grants the cluster gives (nomad/nsqd.nomad.hcl renders the same).
var secureGrants = []nsqdgate.Grant{
	{Service: "integer-gen", Publish: []string{"integers"}},
	{Service: "integeraverage-cal", Subscribe: []nsqdgate.Subscription{{Topic: "integers", Channel: "averager"}},
		Publish: []string{"integers-dead-letter"}, Stats: true},
}

// StartSecureNSQ starts nsqlookupd, nsqd-gate (in this process) and an
// nsqd that requires TLS and asks the gate who may do what.
func StartSecureNSQ(t testing.TB) *SecureNSQ {
	t.Helper()
	s := &SecureNSQ{CA: NewCA(t), Secrets: map[string]string{}}
	grants := nsqdgate.Grants{}
	for _, g := range secureGrants {
		g.Secret = g.Service + "-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		s.Secrets[g.Service] = g.Secret
		grants.Grants = append(grants.Grants, g)
	}
	data, _ := json.Marshal(grants)
	grantsFile := filepath.Join(t.TempDir(), "grants.json")
	if err := os.WriteFile(grantsFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	nsqdFiles := CertFiles(t, s.CA, "nsqd")
	gateFiles := CertFiles(t, s.CA, "nsqd") // the gate runs in nsqd's allocation, as nsqd
	authAddr := Addr(FreePort(t))
	s.GateHTTPS = Addr(FreePort(t))
	s.NSQ = StartNSQTLS(t, NSQDTLS{Cert: nsqdFiles.Cert, Roots: nsqdFiles.Roots, AuthAddr: authAddr})

	o := nsqdgate.NewOptions()
	o.HTTPSAddr, o.AuthAddr, o.NSQDHTTPAddr, o.GrantsFile, o.TLS = s.GateHTTPS, authAddr, s.NSQDHTTP, grantsFile, gateFiles
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- nsqdgate.Run(ctx, o, func(string, string) { close(ready) }, logging.Discard()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("nsqd-gate: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("nsqd-gate did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nsqd-gate did not listen within 10s")
	}
	return s
}

// Client is service's credentials: its certificate and its secret (none
// for a service without a grant).
func (s *SecureNSQ) Client(t testing.TB, service string) nsqtls.Client {
	t.Helper()
	return nsqtls.Client{TLS: CertSource(t, s.CA, service), Secret: s.Secrets[service]}
}

// RegisterIn registers nsqlookupd and nsqd in c as the cluster does: nsqd's
// HTTP API is at meta.https_port, through the gate, and its check GETs the
// gate's /ping.
func (s *SecureNSQ) RegisterIn(t testing.TB, c *Consul) {
	t.Helper()
	_, lh, _ := net.SplitHostPort(s.LookupdHTTP)
	_, lt, _ := net.SplitHostPort(s.LookupdTCP)
	_, dt, _ := net.SplitHostPort(s.NSQDTCP)
	_, gh, _ := net.SplitHostPort(s.GateHTTPS)
	port := func(p string) int { n, _ := strconv.Atoi(p); return n }
	c.Register(t, "nsqlookupd", "nsqlookupd-"+lh, port(lh), map[string]string{"tcp_port": lt},
		&consul.AgentServiceCheck{HTTP: "http://" + s.LookupdHTTP + "/ping", Interval: "1s", Timeout: "1s"})
	c.Register(t, "nsqd", "nsqd-"+dt, port(dt), map[string]string{"https_port": gh},
		&consul.AgentServiceCheck{HTTP: "https://" + s.GateHTTPS + "/ping", TLSSkipVerify: true, Interval: "1s", Timeout: "1s"})
}
