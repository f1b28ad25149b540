// Package nsqtls is how a service proves itself to nsqd: TLS with its
// certificate, accepting only a server whose certificate says nsqd (so a
// fake nsqd that nsqlookupd lists is never sent a message or a secret),
// and its service's secret in AUTH, which nsqd-gate turns into what the
// service may publish and subscribe to.
package nsqtls

import (
	"net/http"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// Service is the Consul service name whose certificate nsqd holds.
const Service = "nsqd"

// Client is a service's credentials for nsqd; the zero Client is
// plaintext without AUTH (a laptop's make run).
type Client struct {
	TLS    *tlsid.Source
	Secret string
}

// Enabled tells whether the client uses TLS.
func (c Client) Enabled() bool { return c.TLS != nil }

// Apply sets cfg's TLS and AUTH.
func (c Client) Apply(cfg *nsq.Config) {
	if c.TLS == nil {
		return
	}
	cfg.TlsV1 = true
	cfg.TlsConfig = c.TLS.ClientConfig(Service)
	cfg.AuthSecret = c.Secret
	// nsqlookupd is plain HTTP: the secret is for nsqd only.
	cfg.LookupdAuthorization = false
}

// Scheme is the scheme of nsqd's HTTP API for this client: https through
// nsqd-gate, or nsqd's own http.
func (c Client) Scheme() string {
	if c.TLS == nil {
		return "http"
	}
	return "https"
}

// PortMeta is the nsqd service's meta key that holds the HTTP API's port
// for this client.
func (c Client) PortMeta() string {
	if c.TLS == nil {
		return "http_port"
	}
	return "https_port"
}

// HTTPClient calls nsqd's HTTP API (through nsqd-gate with TLS).
func (c Client) HTTPClient(timeout time.Duration) *http.Client {
	if c.TLS == nil {
		return &http.Client{Timeout: timeout}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: c.TLS.ClientConfig(Service),
		TLSHandshakeTimeout: timeout, MaxIdleConnsPerHost: 2}}
}

// Settings are a service's nsqd credentials as its flags name them.
type Settings struct {
	TLS    tlsid.Files
	On     bool // TLS files given
	Secret string
}

// Flags are the TLS flags and --nsq-auth-secret.
func Flags(binary string) []cli.Flag {
	return append(cliflags.TLSFlags(binary), &cli.StringFlag{Name: "nsq-auth-secret", EnvVars: cliflags.Env(binary, "nsq-auth-secret"),
		Usage: "this service's secret for nsqd's AUTH (nsqd-gate's grants file holds the same); required with --tls-cert-file"})
}

// ReadFlags reads and checks Flags.
func ReadFlags(c *cli.Context, binary string) (Settings, error) {
	var s Settings
	var err error
	if s.TLS, s.On, err = cliflags.ReadTLS(c, binary); err != nil {
		return s, err
	}
	s.Secret = c.String("nsq-auth-secret")
	switch {
	case s.On && len(s.Secret) < 16:
		return s, cliflags.Invalid(binary, "nsq-auth-secret", "missing or shorter than 16 characters: with TLS, nsqd asks every client for its service's secret")
	case !s.On && s.Secret != "":
		return s, cliflags.Invalid(binary, "nsq-auth-secret", "set without --tls-cert-file: the secret would cross the network in plaintext")
	}
	return s, nil
}

// Load reads the certificate files: the zero Client without TLS.
func (s Settings) Load(binary string) (Client, error) {
	if !s.On {
		return Client{}, nil
	}
	src, err := cliflags.LoadTLS(binary, s.TLS)
	if err != nil {
		return Client{}, err
	}
	return Client{TLS: src, Secret: s.Secret}, nil
}
