package nsqdgate

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
)

const testGrants = `{"grants": [
 {"service": "integer-gen", "secret": "gen-secret-0123456789", "publish": ["integers"]},
 {"service": "integeraverage-cal", "secret": "avg-secret-0123456789", "subscribe": [{"topic": "integers", "channel": "averager"}], "stats": true}
]}`

func TestParseGrantsSaysWhatIsWrong(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"grants": []}`, "no grants"},
		{`{"grant": []}`, "not a grants file"},
		{`{"grants": [{"service": "a", "secret": "short"}]}`, "secret shorter than 16"},
		{`{"grants": [{"secret": "0123456789abcdef"}]}`, "no service"},
		{`{"grants": [{"service": "a", "secret": "0123456789abcdef"}, {"service": "b", "secret": "0123456789abcdef"}]}`, "each service needs its own"},
		{`{"grants": [{"service": "a", "secret": "0123456789abcdef"}, {"service": "a", "secret": "0123456789abcdeg"}]}`, "two grants"},
		{`{"grants": [{"service": "a", "secret": "0123456789abcdef", "publish": ["bad topic"]}]}`, "not a valid NSQ name"},
	} {
		if _, err := ParseGrants([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseGrants(%s) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
	if _, err := ParseGrants([]byte(testGrants)); err != nil {
		t.Fatal(err)
	}
}

func TestTheAuthServerBindsASecretToItsServicesCertificate(t *testing.T) {
	g, _ := ParseGrants([]byte(testGrants))
	h := AuthHandler(func() (*Grants, error) { return g, nil }, time.Minute, logging.Discard())
	ask := func(secret, tls, cn string) (int, authAnswer) {
		q := url.Values{"secret": {secret}, "tls": {tls}, "common_name": {cn}, "remote_ip": {"10.0.0.9"}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/auth?"+q.Encode(), nil))
		var a authAnswer
		json.Unmarshal(rec.Body.Bytes(), &a)
		return rec.Code, a
	}
	if code, _ := ask("gen-secret-0123456789", "false", ""); code != http.StatusUnauthorized {
		t.Errorf("without TLS: %d, want 401", code)
	}
	if code, _ := ask("gen-secret-0123456789", "true", "integer-api.svc.default.6a5ad6b0.consul"); code != http.StatusUnauthorized {
		t.Errorf("integer-gen's secret with a certificate named integer-api: %d, want 401", code)
	}
	if code, _ := ask("guess-0123456789abc", "true", ""); code != http.StatusUnauthorized {
		t.Errorf("an unknown secret: %d, want 401", code)
	}
	// Consul's leaves have no common name: the secret names the service.
	code, a := ask("avg-secret-0123456789", "true", "")
	if code != 200 || a.Identity != "integeraverage-cal" || a.TTL != 60 || len(a.Authorizations) != 1 {
		t.Fatalf("the averager: %d %+v, want 200 with one authorization, ttl 60", code, a)
	}
	if az := a.Authorizations[0]; az.Topic != "^integers$" || az.Channels[0] != "^averager$" || az.Permissions[0] != "subscribe" {
		t.Errorf("the averager's authorization %+v, want subscribe to ^integers$ on ^averager$", az)
	}
}

// On the cluster nsqd's HTTP API is a unix socket in the allocation's
// directory: the gate reaches it there.
func TestTheGateReachesNSQDOverAUnixSocket(t *testing.T) {
	sock := t.TempDir() + "/nsqd-http.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK from " + r.URL.Path)) })}
	go srv.Serve(ln)
	defer srv.Close()
	g, _ := ParseGrants([]byte(testGrants))
	rec := httptest.NewRecorder()
	HTTPGate(sock, func() (*Grants, error) { return g, nil }, logging.Discard()).ServeHTTP(rec, httptest.NewRequest("GET", "/ping", nil))
	if rec.Code != 200 || rec.Body.String() != "OK from /ping" {
		t.Errorf("GET /ping through the gate to a unix socket: %d %q", rec.Code, rec.Body.String())
	}
	if _, err := ParseArgs([]string{"--https-addr", "0.0.0.0:4152", "--nsqd-http-addr", sock, "--grants-file", "/g.json",
		"--tls-cert-file", "/c.pem", "--tls-roots-file", "/r.pem"}); err != nil {
		t.Errorf("a socket path for --nsqd-http-addr: %v", err)
	}
	if _, err := ParseArgs([]string{"--https-addr", "0.0.0.0:4152", "--nsqd-http-addr", "10.0.0.5:4151", "--grants-file", "/g.json",
		"--tls-cert-file", "/c.pem", "--tls-roots-file", "/r.pem"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("nsqd's HTTP on the network: %v, want refused (not on loopback)", err)
	}
}
