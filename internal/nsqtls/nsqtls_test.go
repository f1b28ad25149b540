package nsqtls

import (
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// With TLS the secret goes to nsqd only: never to nsqlookupd, which is
// plain HTTP (go-nsq sends it there as a bearer token by default).
func TestTheSecretNeverGoesToNsqlookupd(t *testing.T) {
	ca, err := devca.New("td.consul", "dc1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.Files(t.TempDir(), "integer-gen", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := tlsid.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nsq.NewConfig()
	if !cfg.LookupdAuthorization {
		t.Fatal("go-nsq's default changed: LookupdAuthorization is already off")
	}
	Client{TLS: src, Secret: "integer-gen-secret-0123"}.Apply(cfg)
	if cfg.LookupdAuthorization || !cfg.TlsV1 || cfg.AuthSecret != "integer-gen-secret-0123" || cfg.TlsConfig.VerifyConnection == nil {
		t.Errorf("applied: lookupd authorization %v, TLS %v, secret %q, identity check %v; want false, true, the secret, set",
			cfg.LookupdAuthorization, cfg.TlsV1, cfg.AuthSecret, cfg.TlsConfig.VerifyConnection != nil)
	}
	plain := nsq.NewConfig()
	Client{}.Apply(plain)
	if plain.TlsV1 || plain.AuthSecret != "" {
		t.Error("the zero Client set TLS or a secret")
	}
}
