package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// requestTimeout bounds every request, raw or typed: a check that polls
// must not hang on an agent that stopped answering.
const requestTimeout = 10 * time.Second

// API is an HTTPS client of one agent, as an operator outside the hosts
// has it: the cluster's CA, the TLS server name of the agents' certificates
// (the addresses an operator uses may not be in them), an optional client
// certificate, and an ACL token.
//
// It sends requests as they are and hands back the status code, for the
// checks whose point is the code (a refusal, an anonymous request, a TLS
// handshake) and for what the typed clients (NewConsul, NewNomad) cannot
// express; state is read with the typed clients.
type API struct {
	Base   string // https://IP:PORT
	Token  string
	Header string // X-Consul-Token or X-Nomad-Token
	client *http.Client
}

// NewAPI makes a client; cert and key may be empty.
func NewAPI(base, caPEM, serverName, certPEM, keyPEM, header, token string) (*API, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, fmt.Errorf("no CA certificate in the PEM")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	if certPEM != "" {
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &API{Base: base, Token: token, Header: header, client: &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}}, nil
}

// WithToken is the same client with another token ("" for anonymous).
func (a *API) WithToken(token string) *API {
	b := *a
	b.Token = token
	return &b
}

// Do sends a request and returns the status and body.
func (a *API) Do(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, a.Base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if a.Token != "" {
		req.Header.Set(a.Header, a.Token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// JSON GETs path and decodes a 200 answer into v.
func (a *API) JSON(path string, v any) error {
	code, body, err := a.Do("GET", path, "")
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("GET %s: %d %s", path, code, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// NewConsul is a consul/api client of the agent at base (https://IP:PORT)
// with the same TLS as NewAPI's; cert and key may be empty.
func NewConsul(base, caPEM, serverName, certPEM, keyPEM, token string) (*consulapi.Client, error) {
	// consul/api takes an empty token from CONSUL_HTTP_TOKEN: an anonymous
	// request goes through API.
	if token == "" {
		return nil, errors.New("a Consul client needs a token (anonymous requests go through API)")
	}
	tlsCfg := consulapi.TLSConfig{Address: serverName, CAPem: []byte(caPEM), CertPEM: []byte(certPEM), KeyPEM: []byte(keyPEM)}
	// The HTTP client is made here, so no CONSUL_CACERT or CONSUL_CLIENT_*
	// in the environment replaces the cluster's CA and certificate.
	tr := &http.Transport{DisableKeepAlives: true}
	hc, err := consulapi.NewHttpClient(tr, tlsCfg)
	if err != nil {
		return nil, err
	}
	hc.Timeout = requestTimeout
	return consulapi.NewClient(&consulapi.Config{Address: base, Transport: tr, HttpClient: hc, TLSConfig: tlsCfg, Token: token})
}

// NewNomad is a nomad/api client of the agent at base (https://IP:PORT)
// with the same TLS as NewAPI's; cert and key may be empty, token too.
func NewNomad(base, caPEM, serverName, certPEM, keyPEM, token string) (*nomadapi.Client, error) {
	tlsCfg := &nomadapi.TLSConfig{CACertPEM: []byte(caPEM), ClientCertPEM: []byte(certPEM), ClientKeyPEM: []byte(keyPEM), TLSServerName: serverName}
	hc := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
	}}
	if err := nomadapi.ConfigureTLS(hc, tlsCfg); err != nil {
		return nil, err
	}
	return nomadapi.NewClient(&nomadapi.Config{Address: base, SecretID: token, HttpClient: hc, TLSConfig: tlsCfg})
}
