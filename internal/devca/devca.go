// Package devca is a throwaway certificate authority shaped like Consul's
// built-in Connect CA: a root whose URI is the trust domain, and leaf
// certificates that carry one SPIFFE service URI and no common name.
// Tests use it to exercise the TLS paths against real nsqd and Redis; it is
// never a cluster's CA (Consul issues those certificates).
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/loopstock/loopstock/internal/tlsid"
)

// CA signs leaf certificates for one trust domain.
type CA struct {
	TrustDomain string
	Datacenter  string
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	rootPEM     []byte
}

// New makes a CA for trustDomain (Consul's look like
// "<cluster id>.consul") whose leaves name datacenter.
func New(trustDomain, datacenter string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "loopstock test CA " + trustDomain},
		URIs:      []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{TrustDomain: trustDomain, Datacenter: datacenter, cert: cert, key: key,
		rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// RootPEM is the root certificate, PEM (what caRoots renders).
func (ca *CA) RootPEM() []byte { return ca.rootPEM }

// Identity is service's identity in this CA's trust domain.
func (ca *CA) Identity(service string) tlsid.Identity {
	return tlsid.Identity{TrustDomain: ca.TrustDomain, Namespace: "default", Datacenter: ca.Datacenter, Service: service}
}

// Leaf is a certificate and key for service, valid for ttl, PEM in one
// block of bytes (certificate first), as the jobs render caLeaf.
func (ca *CA) Leaf(service string, ttl time.Duration) ([]byte, error) {
	return ca.LeafFor(ca.Identity(service), ttl)
}

// LeafFor is Leaf for any identity (a wrong trust domain, for tests).
func (ca *CA) LeafFor(id tlsid.Identity, ttl time.Duration) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		// As Consul 1.14's leaves: no common name, the URI is the identity.
		URIs:      []*url.URL{id.URI()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...), nil
}

// Files writes service's leaf (0600) and the roots into dir and returns
// their paths.
func (ca *CA) Files(dir, service string, ttl time.Duration) (tlsid.Files, error) {
	leaf, err := ca.Leaf(service, ttl)
	if err != nil {
		return tlsid.Files{}, err
	}
	f := tlsid.Files{Cert: filepath.Join(dir, service+".pem"), Roots: filepath.Join(dir, "roots.pem")}
	if err := os.WriteFile(f.Cert, leaf, 0o600); err != nil {
		return f, err
	}
	return f, os.WriteFile(f.Roots, ca.rootPEM, 0o644)
}
