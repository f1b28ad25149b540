package tlsid_test

import (
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/tlsid"
)

func newCA(t *testing.T, domain string) *devca.CA {
	t.Helper()
	ca, err := devca.New(domain, "dc1")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func source(t *testing.T, ca *devca.CA, service string) (*tlsid.Source, tlsid.Files) {
	t.Helper()
	f, err := ca.Files(t.TempDir(), service, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlsid.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

// handshake runs one TLS handshake over loopback; it returns the client's
// and the server's errors and the identity the client saw.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error, seen string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 reports a refused client certificate only on the first read.
			_, err = tc.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		buf := make([]byte, 1)
		_, clientErr = tc.Read(buf)
		if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].URIs) > 0 {
			seen = cs.PeerCertificates[0].URIs[0].String()
		}
	}
	return clientErr, <-done, seen
}

func TestTheExpectedServicesConnect(t *testing.T) {
	ca := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	api, _ := source(t, ca, "integer-api")
	avg, _ := source(t, ca, "integeraverage-cal")
	cerr, serr, seen := handshake(t, api.ServerConfig("integeraverage-cal"), avg.ClientConfig("integer-api"))
	if cerr != nil || serr != nil {
		t.Fatalf("client error %v, server error %v; want both nil", cerr, serr)
	}
	if want := ca.Identity("integer-api").String(); seen != want {
		t.Errorf("client saw %q, want %q", seen, want)
	}
}

func TestPeersThatShouldNotTalkAreRefused(t *testing.T) {
	ca := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	other := newCA(t, "99999999-2222-3333-4444-555555555555.consul")
	api, _ := source(t, ca, "integer-api")
	avg, _ := source(t, ca, "integeraverage-cal")
	gen, _ := source(t, ca, "integer-gen")

	t.Run("a client of the wrong service", func(t *testing.T) {
		_, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), gen.ClientConfig("integer-api"))
		if !tlsid.IsPeerError(serr) || !strings.Contains(serr.Error(), `"integer-gen" may not talk to integer-api`) {
			t.Errorf("server error %v, want integer-gen refused by name", serr)
		}
	})
	t.Run("a server of the wrong service", func(t *testing.T) {
		cerr, _, _ := handshake(t, gen.ServerConfig("integeraverage-cal"), avg.ClientConfig("integer-api"))
		if !tlsid.IsPeerError(cerr) {
			t.Errorf("client error %v, want a refused peer", cerr)
		}
	})
	t.Run("a client of another CA", func(t *testing.T) {
		// The stranger knows the cluster's roots (they are public) but holds a leaf of its own CA.
		leaf, err := other.Leaf("integeraverage-cal", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), presenting(t, avg.ClientConfig("integer-api"), leaf))
		if !tlsid.IsPeerError(serr) || !strings.Contains(serr.Error(), "unknown authority") {
			t.Errorf("server error %v, want an unknown authority", serr)
		}
	})
	t.Run("a client without a certificate", func(t *testing.T) {
		cfg := avg.ClientConfig("integer-api")
		cfg.GetClientCertificate = nil
		_, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), cfg)
		if serr == nil {
			t.Error("a client without a certificate was accepted")
		}
	})
	t.Run("a leaf of another trust domain signed by this CA", func(t *testing.T) {
		id := ca.Identity("integeraverage-cal")
		id.TrustDomain = "99999999-2222-3333-4444-555555555555.consul"
		leaf, err := ca.LeafFor(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), presenting(t, avg.ClientConfig("integer-api"), leaf))
		if !tlsid.IsPeerError(serr) || !strings.Contains(serr.Error(), "trust domain") {
			t.Errorf("server error %v, want the trust domain refused", serr)
		}
	})
}

func TestARenewedLeafAndARotatedRootNeedNoRestart(t *testing.T) {
	ca := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	api, apiFiles := source(t, ca, "integer-api")
	avg, avgFiles := source(t, ca, "integeraverage-cal")
	before := api.NotAfter()

	// The renewal: a new leaf written over the file (as Nomad's template does).
	leaf, err := ca.Leaf("integer-api", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, apiFiles.Cert, leaf, 0o600)
	if cerr, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), avg.ClientConfig("integer-api")); cerr != nil || serr != nil {
		t.Fatalf("after the renewal: client %v, server %v", cerr, serr)
	}
	if !api.NotAfter().After(before) {
		t.Errorf("the certificate in use expires %s, want the renewed one (after %s)", api.NotAfter(), before)
	}

	// The root rotation: new roots and new leaves on both sides.
	next := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	for _, f := range []tlsid.Files{apiFiles, avgFiles} {
		replace(t, f.Roots, append(append([]byte{}, next.RootPEM()...), ca.RootPEM()...), 0o644)
	}
	leaf, _ = next.Leaf("integer-api", time.Hour)
	replace(t, apiFiles.Cert, leaf, 0o600)
	// The averager still holds a leaf of the old root: both roots are trusted during the rotation.
	if cerr, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), avg.ClientConfig("integer-api")); cerr != nil || serr != nil {
		t.Fatalf("during the root rotation: client %v, server %v", cerr, serr)
	}
	// The old root retired: a peer still holding an old leaf is refused.
	replace(t, apiFiles.Roots, next.RootPEM(), 0o644)
	if _, serr, _ := handshake(t, api.ServerConfig("integeraverage-cal"), avg.ClientConfig("integer-api")); !tlsid.IsPeerError(serr) {
		t.Errorf("a leaf of the retired root: server error %v, want a refused peer", serr)
	}
}

// presenting is cfg presenting leaf (certificate and key, PEM) instead.
func presenting(t *testing.T, cfg *tls.Config, leaf []byte) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(leaf, leaf)
	if err != nil {
		t.Fatal(err)
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return cfg
}

// replace writes data to path through a rename, as consul-template does,
// with a modification time that differs from the file it replaces.
func replace(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	old, _ := os.Stat(path)
	tmp := filepath.Join(filepath.Dir(path), ".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if old != nil {
		mt := old.ModTime().Add(time.Second)
		os.Chtimes(tmp, mt, mt)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSaysWhatIsWrongWithAFile(t *testing.T) {
	ca := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	dir := t.TempDir()
	good, err := ca.Files(dir, "integer-api", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certOnly, _ := ca.Leaf("integer-api", time.Hour)
	certOnly = certOnly[:strings.Index(string(certOnly), "-----BEGIN EC PRIVATE KEY")]
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	leaf, _ := os.ReadFile(good.Cert)
	cases := []struct {
		name  string
		files tlsid.Files
		want  string
	}{
		{"a missing certificate file", tlsid.Files{Cert: filepath.Join(dir, "absent.pem"), Roots: good.Roots}, "no such file"},
		{"a key readable by others", tlsid.Files{Cert: write("open.pem", leaf, 0o644), Roots: good.Roots}, "make it 0600"},
		{"a certificate without its key", tlsid.Files{Cert: write("nokey.pem", certOnly, 0o600), Roots: good.Roots}, "its private key"},
		{"roots without a trust domain", tlsid.Files{Cert: good.Cert, Roots: write("plain.pem", []byte("not pem"), 0o644)}, "no CA certificate with a SPIFFE trust domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tlsid.Load(c.files)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestParseURIAcceptsOnlyServiceIdentities(t *testing.T) {
	for raw, ok := range map[string]bool{
		"spiffe://td.consul/ns/default/dc/dc1/svc/nsqd": true,
		"spiffe://td.consul":                            false,
		"spiffe://td.consul/agent/client/dc/dc1/id/x":   false,
		"https://td.consul/ns/default/dc/dc1/svc/nsqd":  false,
		"spiffe://td.consul/ns/default/dc/dc1/svc/":     false,
	} {
		u, _ := url.Parse(raw)
		id, err := tlsid.ParseURI(u)
		if (err == nil) != ok {
			t.Errorf("ParseURI(%s) = %v, %v; want ok=%v", raw, id, err, ok)
		}
		if ok && id.URI().String() != raw {
			t.Errorf("round trip of %s gave %s", raw, id.URI())
		}
	}
}

func TestCheckSaysWhenTheCertificateNoLongerWorks(t *testing.T) {
	ca := newCA(t, "11111111-2222-3333-4444-555555555555.consul")
	s, f := source(t, ca, "integer-api")
	if err := s.Check(); err != nil {
		t.Fatalf("a fresh leaf: %v", err)
	}
	expired, err := ca.Leaf("integer-api", -time.Second) // NotAfter already past
	if err != nil {
		t.Fatal(err)
	}
	replace(t, f.Cert, expired, 0o600)
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired leaf: %v, want it named expired", err)
	}
	replace(t, f.Cert, []byte("half written"), 0o600)
	if err := s.Check(); err == nil {
		t.Error("an unusable certificate file: no error")
	}
}
