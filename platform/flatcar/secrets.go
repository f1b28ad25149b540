package flatcar

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sort"
	"strings"
	"time"
)

// Secrets are a cluster's secrets, as the Terraform secrets module makes
// them (for clusters built without Terraform: the Vagrant one).
type Secrets struct {
	CA              string           `json:"ca"`
	CAKey           string           `json:"ca_key"`
	Certs           map[string]Cert  `json:"certs"`
	ConsulGossipKey string           `json:"consul_gossip_key"`
	NomadGossipKey  string           `json:"nomad_gossip_key"`
	Tokens          map[string]Token `json:"tokens"`
}

// Cert is a certificate and its key, PEM.
type Cert struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Token is an ACL token.
type Token struct {
	Accessor string `json:"accessor"`
	Secret   string `json:"secret"`
}

func uuid() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func newKey() (*ecdsa.PrivateKey, string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalECPrivateKey(k)
	return k, pemOf("EC PRIVATE KEY", der), err
}

// GenerateSecrets makes a CA, the agents' certificates (the names the
// Terraform module uses), gossip keys and ACL tokens.
func GenerateSecrets(datacenter string, serverIPs []string, clients int) (*Secrets, error) {
	caKey, caKeyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loopstock " + datacenter + " CA", Organization: []string{"loopstock"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	s := &Secrets{CA: pemOf("CERTIFICATE", caDER), CAKey: caKeyPEM, Certs: map[string]Cert{}, Tokens: map[string]Token{}}
	type want struct {
		cn  string
		dns []string
		ips []string
	}
	wants := map[string]want{"cli": {"cli.global.nomad", []string{"cli.global.nomad"}, nil}}
	for i, ip := range serverIPs {
		wants[fmt.Sprintf("consul-server-%d", i)] = want{"server." + datacenter + ".consul", []string{"server." + datacenter + ".consul", "localhost"}, []string{ip, "127.0.0.1"}}
		wants[fmt.Sprintf("nomad-server-%d", i)] = want{"server.global.nomad", []string{"server.global.nomad", "localhost"}, []string{ip, "127.0.0.1"}}
	}
	for i := 0; i < clients; i++ {
		wants[fmt.Sprintf("consul-client-%d", i)] = want{"client." + datacenter + ".consul", []string{"client." + datacenter + ".consul", "localhost"}, []string{"127.0.0.1"}}
		wants[fmt.Sprintf("nomad-client-%d", i)] = want{"client.global.nomad", []string{"client.global.nomad", "localhost"}, []string{"127.0.0.1"}}
	}
	serial := int64(2)
	for name, w := range wants {
		key, keyPEM, err := newKey()
		if err != nil {
			return nil, err
		}
		tpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: w.cn}, DNSNames: w.dns,
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		serial++
		for _, ip := range w.ips {
			tpl.IPAddresses = append(tpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, caTpl, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		s.Certs[name] = Cert{Cert: pemOf("CERTIFICATE", der), Key: keyPEM}
	}
	gossip := func() string { b := make([]byte, 32); rand.Read(b); return base64.StdEncoding.EncodeToString(b) }
	s.ConsulGossipKey, s.NomadGossipKey = gossip(), gossip()
	for _, n := range ConsulTokens {
		s.Tokens[n] = Token{Accessor: uuid(), Secret: uuid()}
	}
	for _, n := range []string{"consul-bootstrap", "nomad-bootstrap"} {
		s.Tokens[n] = Token{Secret: uuid()}
	}
	return s, nil
}

// ConsulTokens are the Consul ACL tokens the first server creates, each
// with the policy of the same name (ignition/server.yaml): the agents',
// the default (anonymous requests and DNS: read the catalog), Nomad's, the
// maintenance scripts', the services' and Prometheus's (service discovery:
// read the catalog).
var ConsulTokens = []string{"agent", "default", "nomad", "maintenance", "loopstock", "prometheus"}

// Files returns what one host receives in /etc/loopstock/secrets, as the
// Terraform provision module copies it: role "server" (index i; the first
// one also bootstraps the ACLs) or "client". The host turns them into its
// agents' configs (loopstock-secrets.service).
func (s *Secrets) Files(role string, i int) map[string]string {
	consul, nomad := s.Certs[fmt.Sprintf("consul-%s-%d", role, i)], s.Certs[fmt.Sprintf("nomad-%s-%d", role, i)]
	f := map[string]string{
		"ca.pem": s.CA, "cli.pem": s.Certs["cli"].Cert, "cli-key.pem": s.Certs["cli"].Key,
		"consul.pem": consul.Cert, "consul-key.pem": consul.Key, "nomad.pem": nomad.Cert, "nomad-key.pem": nomad.Key,
		"consul-gossip.key": s.ConsulGossipKey,
	}
	for _, n := range []string{"agent", "default", "nomad", "maintenance"} {
		f["consul-"+n+".token"] = s.Tokens[n].Secret
	}
	if role == "server" {
		f["nomad-gossip.key"] = s.NomadGossipKey
		f["consul-bootstrap.token"] = s.Tokens["consul-bootstrap"].Secret
	}
	if role == "server" && i == 0 {
		f["nomad-bootstrap.token"] = s.Tokens["nomad-bootstrap"].Secret
		// The jobs' tokens: no host uses them, the first server creates them.
		f["consul-loopstock.token"] = s.Tokens["loopstock"].Secret
		f["consul-prometheus.token"] = s.Tokens["prometheus"].Secret
		for _, n := range ConsulTokens {
			f["consul-"+n+".accessor"] = s.Tokens[n].Accessor
		}
	}
	return f
}

// InstallScript writes the files into /etc/loopstock/secrets (root only)
// and then touches the ready marker, which makes the host install them:
// the same steps as the Terraform provision module.
func InstallScript(files map[string]string) string {
	var b strings.Builder
	b.WriteString("#!/bin/bash\nset -euo pipefail\numask 077\nmkdir -p /etc/loopstock/secrets\n")
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "echo '%s' | base64 -d > /etc/loopstock/secrets/%s\n", base64.StdEncoding.EncodeToString([]byte(files[n])), n)
	}
	b.WriteString("touch /etc/loopstock/secrets/ready\n")
	return b.String()
}

// Renew returns a copy of the secrets in which the named certificates are
// issued again (new keys, same names and addresses, same CA): what a
// certificate rotation delivers.
func (s *Secrets) Renew(names ...string) (*Secrets, error) {
	caBlock, _ := pem.Decode([]byte(s.CA))
	keyBlock, _ := pem.Decode([]byte(s.CAKey))
	if caBlock == nil || keyBlock == nil {
		return nil, fmt.Errorf("renew: the CA certificate or key is not PEM")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return nil, err
	}
	caKey, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, err
	}
	out := *s
	out.Certs = map[string]Cert{}
	for k, v := range s.Certs {
		out.Certs[k] = v
	}
	now := time.Now()
	for i, name := range names {
		block, _ := pem.Decode([]byte(s.Certs[name].Cert))
		if block == nil {
			return nil, fmt.Errorf("renew: no certificate %q", name)
		}
		old, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		key, keyPEM, err := newKey()
		if err != nil {
			return nil, err
		}
		tpl := &x509.Certificate{
			SerialNumber: big.NewInt(now.UnixNano() + int64(i)), Subject: old.Subject, DNSNames: old.DNSNames, IPAddresses: old.IPAddresses,
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: old.KeyUsage, ExtKeyUsage: old.ExtKeyUsage,
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, err
		}
		out.Certs[name] = Cert{Cert: pemOf("CERTIFICATE", der), Key: keyPEM}
	}
	return &out, nil
}
