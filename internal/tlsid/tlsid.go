// Package tlsid is mutual TLS between the services with the identities
// Consul's Connect CA issues: a leaf certificate carries one SPIFFE URI,
// spiffe://<trust domain>/ns/<namespace>/dc/<datacenter>/svc/<service>,
// and each side accepts a peer only when its chain leads to a current root
// and its URI names a service it expects. Host names are never checked:
// nsqlookupd and Consul say where a peer is, the certificate says who.
//
// The certificate and its key live in one file (Nomad renders Consul's
// caLeaf there), so a renewal never pairs a new certificate with an old
// key; the roots in another (caRoots). Both are read again when they
// change, at the next handshake: a renewed leaf or a rotated root needs no
// restart.
package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Identity is a service's SPIFFE identity.
type Identity struct {
	TrustDomain, Namespace, Datacenter, Service string
}

// URI is the identity as it appears in a certificate.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain,
		Path: "/ns/" + id.Namespace + "/dc/" + id.Datacenter + "/svc/" + id.Service}
}

func (id Identity) String() string { return id.URI().String() }

// ParseURI reads a service identity; any other SPIFFE ID is an error.
func ParseURI(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host == "" {
		return Identity{}, fmt.Errorf("%s is not a SPIFFE ID", u)
	}
	p := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(p) != 6 || p[0] != "ns" || p[2] != "dc" || p[4] != "svc" || p[1] == "" || p[3] == "" || p[5] == "" {
		return Identity{}, fmt.Errorf("%s is not a service identity (want spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<name>)", u)
	}
	return Identity{TrustDomain: u.Host, Namespace: p[1], Datacenter: p[3], Service: p[5]}, nil
}

// Of is the service identity of a leaf certificate: exactly one URI.
func Of(cert *x509.Certificate) (Identity, error) {
	if len(cert.URIs) != 1 {
		return Identity{}, fmt.Errorf("certificate %q has %d URIs, want exactly one SPIFFE service ID", cert.Subject.CommonName, len(cert.URIs))
	}
	return ParseURI(cert.URIs[0])
}

// Files are where a service's certificate material is.
type Files struct {
	// Cert holds the leaf certificate, any intermediates, and the private
	// key, PEM; it must be readable by its owner only.
	Cert string
	// Roots holds the CA's root certificates, PEM; each carries its trust
	// domain as a URI (spiffe://<trust domain>), as Consul's roots do.
	Roots string
}

// Source is a service's certificate material, read again when its files
// change.
type Source struct {
	files Files
	now   func() time.Time

	mu        sync.Mutex
	certStamp stamp
	rootStamp stamp
	cert      *tls.Certificate
	id        Identity
	roots     *x509.CertPool
	domains   []string // trust domains of the roots
}

// stamp tells whether a file changed since it was read.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// Load reads files now; an error says which file and what is wrong with it.
func Load(files Files) (*Source, error) {
	s := &Source{files: files, now: time.Now}
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Identity is this service's own identity, from its current certificate.
func (s *Source) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// NotAfter is when the current certificate expires.
func (s *Source) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert.Leaf.NotAfter
}

// refresh reads whichever file changed. A file that changed but cannot be
// used (half written, or a key that does not match) keeps the previous
// material and is an error: the caller's handshake fails with it, the next
// one tries again.
func (s *Source) refresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := stampOf(s.files.Cert)
	if err != nil {
		return fmt.Errorf("certificate file: %w", err)
	}
	rs, err := stampOf(s.files.Roots)
	if err != nil {
		return fmt.Errorf("roots file: %w", err)
	}
	if rs != s.rootStamp || s.roots == nil {
		roots, domains, err := readRoots(s.files.Roots)
		if err != nil {
			return err
		}
		s.roots, s.domains, s.rootStamp = roots, domains, rs
	}
	if cs != s.certStamp || s.cert == nil {
		cert, id, err := readCert(s.files.Cert)
		if err != nil {
			return err
		}
		s.cert, s.id, s.certStamp = cert, id, cs
	}
	return nil
}

func readRoots(path string) (*x509.CertPool, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("roots file: %w", err)
	}
	pool := x509.NewCertPool()
	var domains []string
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("roots file %s: %w", path, err)
		}
		pool.AddCert(c)
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && u.Host != "" && !slices.Contains(domains, u.Host) {
				domains = append(domains, u.Host)
			}
		}
	}
	if len(domains) == 0 {
		return nil, nil, fmt.Errorf("roots file %s holds no CA certificate with a SPIFFE trust domain (a URI spiffe://<trust domain>): render it from Consul's caRoots", path)
	}
	return pool, domains, nil
}

func readCert(path string) (*tls.Certificate, Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("certificate file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, Identity{}, fmt.Errorf("certificate file %s holds a private key and is readable by others (mode %#o): make it 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("certificate file: %w", err)
	}
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("certificate file %s: %w (it must hold the certificate and its private key, PEM)", path, err)
	}
	id, err := Of(cert.Leaf)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("certificate file %s: %w", path, err)
	}
	return &cert, id, nil
}

// PeerError is a peer refused: its certificate is missing, does not lead
// to a current root, or names a service this side does not accept.
type PeerError struct{ Reason string }

func (e *PeerError) Error() string { return "peer refused: " + e.Reason }

// verify checks a peer's chain against the current roots and its identity
// against accept (services; empty accepts none).
func (s *Source) verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, accept []string) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, &PeerError{"no certificate"}
	}
	if err := s.refresh(); err != nil {
		return Identity{}, err
	}
	s.mu.Lock()
	roots, domains := s.roots, s.domains
	s.mu.Unlock()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Identity{}, &PeerError{err.Error()}
	}
	id, err := Of(chain[0])
	if err != nil {
		return Identity{}, &PeerError{err.Error()}
	}
	if !slices.Contains(domains, id.TrustDomain) {
		return id, &PeerError{fmt.Sprintf("%s is not in this cluster's trust domain %s", id, strings.Join(domains, ", "))}
	}
	if !slices.Contains(accept, id.Service) {
		return id, &PeerError{fmt.Sprintf("%s: service %q may not talk to %s (accepted: %s)", id, id.Service, s.Identity().Service, strings.Join(accept, ", "))}
	}
	return id, nil
}

func (s *Source) current() (*tls.Certificate, error) {
	if err := s.refresh(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// ServerConfig is a listener's configuration: it requires a client
// certificate of one of the services in accept.
func (s *Source) ServerConfig(accept ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is verified below, against the roots of the moment.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, accept)
			return err
		},
	}
}

// ServerConfigOptional is ServerConfig for a listener that also answers
// clients without a certificate (a health check): a certificate given is
// verified all the same, and the handler decides with PeerIdentity.
func (s *Source) ServerConfigOptional(accept ...string) *tls.Config {
	return s.ServerConfigOptionalFunc(func() []string { return accept })
}

// ServerConfigOptionalFunc is ServerConfigOptional with the services
// accepted asked at each handshake (a grants file read again).
func (s *Source) ServerConfigOptionalFunc(accept func() []string) *tls.Config {
	cfg := s.ServerConfig()
	cfg.ClientAuth = tls.RequestClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		_, err := s.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, accept())
		return err
	}
	return cfg
}

// PeerIdentity is the identity of a connection's verified peer; ok is
// false without a certificate.
func PeerIdentity(cs *tls.ConnectionState) (id Identity, ok bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := Of(cs.PeerCertificates[0])
	return id, err == nil
}

// ClientConfig is a client's configuration: it presents this service's
// certificate and accepts a server only when it is one of the services in
// accept.
func (s *Source) ClientConfig(accept ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Host names are not what identifies a peer: the URI is, checked
		// below with the chain (as Consul's own Go client does).
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := s.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, accept)
			return err
		},
	}
}

// IsPeerError tells whether err is (or wraps) a refused peer.
func IsPeerError(err error) bool {
	var pe *PeerError
	return errors.As(err, &pe)
}

// Status is the certificate in use, for a service's /health: who it
// says this is, until when, and which CA key signed it (the SubjectKeyId
// of the root or intermediate, hex), so a rotation can be seen to reach
// every instance.
func (s *Source) Status() map[string]any {
	if err := s.refresh(); err != nil {
		return map[string]any{"error": err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]any{"identity": s.id.String(), "not_after": s.cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"serial": s.cert.Leaf.SerialNumber.Text(16), "authority_key_id": hex.EncodeToString(s.cert.Leaf.AuthorityKeyId)}
}

// Check says what keeps the certificate material from working: a file
// that cannot be used, or a certificate past its end (nil: it works). A
// service's health check fails with it: every handshake would.
func (s *Source) Check() error {
	if err := s.refresh(); err != nil {
		return err
	}
	if end := s.NotAfter(); s.now().After(end) {
		return fmt.Errorf("the certificate of %s expired at %s: is Consul's CA reachable for its renewal?", s.Identity(), end.UTC().Format(time.RFC3339))
	}
	return nil
}

// Chain is the certificate in use and the intermediates that came with it.
func (s *Source) Chain() ([]*x509.Certificate, error) {
	if err := s.refresh(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	raw := s.cert.Certificate
	s.mu.Unlock()
	out := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
