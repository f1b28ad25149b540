package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// API is an HTTPS client of one agent, as an operator outside the hosts
// has it: the cluster's CA, the TLS server name of the agents' certificates
// (the addresses an operator uses may not be in them), an optional client
// certificate, and an ACL token.
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
		Timeout:   10 * time.Second,
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
