package nsqdgate

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/tlsid"
)

// authorization is one entry of nsqd's auth-server answer.
type authorization struct {
	Topic       string   `json:"topic"`
	Channels    []string `json:"channels"`
	Permissions []string `json:"permissions"`
}

// authAnswer is what nsqd expects from its auth server.
type authAnswer struct {
	TTL            int             `json:"ttl"`
	Identity       string          `json:"identity"`
	Authorizations []authorization `json:"authorizations"`
}

// AuthHandler answers nsqd's auth queries (GET /auth?secret=…&tls=…&
// common_name=…): the grant of the secret, when the connection is TLS
// (nsqd has verified its certificate's chain to the cluster's CA). nsqd
// passes on only the certificate's common name, which Consul's leaves
// leave empty (their identity is the URI): on nsqd's TCP protocol the
// secret says which service it is. A common name, when a CA sets one,
// must be the grant's service (<service>.svc.…, Consul's old form). ttl
// is how long nsqd keeps an answer: a revoked secret stops working within
// it.
func AuthHandler(grants func() (*Grants, error), ttl time.Duration, log *logrus.Entry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth" {
			http.Error(w, "nsqd's auth endpoint is /auth", http.StatusNotFound)
			return
		}
		q := r.URL.Query()
		fields := logrus.Fields{"remote_ip": q.Get("remote_ip"), "common_name": q.Get("common_name")}
		refuse := func(why string) {
			log.WithFields(fields).Warn("nsqd client refused: " + why)
			// nsqd tells the client only "AUTH failed"; the reason is logged
			// here. 401, not 403: nsqd takes a 403 for "retry over HTTPS".
			http.Error(w, why, http.StatusUnauthorized)
		}
		g, err := grants()
		if err != nil {
			log.WithError(err).Error("grants file")
			if g == nil {
				http.Error(w, "no grants", http.StatusInternalServerError)
				return
			}
		}
		if q.Get("tls") != "true" {
			refuse("the connection is not TLS")
			return
		}
		gr, ok := g.bySecret(q.Get("secret"))
		if !ok {
			refuse("unknown secret")
			return
		}
		fields["service"] = gr.Service
		if cn := q.Get("common_name"); cn != "" && !strings.HasPrefix(cn, gr.Service+".svc.") {
			refuse("the secret of " + gr.Service + " sent with another service's certificate")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(authAnswer{TTL: int(ttl.Seconds()), Identity: gr.Service, Authorizations: gr.authorizations()})
		log.WithFields(fields).Debug("nsqd client authorized")
	})
}

// HTTPGate is nsqd's HTTP API for the network: the caller's certificate
// names its service (the TLS layer verified it), and only the calls that
// service's grant allows reach nsqd. GET /ping needs no certificate (the
// health check).
//
// nsqdHTTP is nsqd's own HTTP address: host:port on loopback, or the path
// of a unix socket (the cluster's: in the allocation's directory, which no
// other job can reach, unlike a loopback port).
func HTTPGate(nsqdHTTP string, grants func() (*Grants, error), log *logrus.Entry) http.Handler {
	target := &url.URL{Scheme: "http", Host: nsqdHTTP}
	proxy := httputil.NewSingleHostReverseProxy(target)
	if strings.HasPrefix(nsqdHTTP, "/") {
		target.Host = "nsqd"
		var d net.Dialer
		proxy.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", nsqdHTTP)
		}}
	}
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		log.WithError(err).Warn("nsqd did not answer")
		http.Error(w, "nsqd did not answer: "+err.Error(), http.StatusBadGateway)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/ping" {
			proxy.ServeHTTP(w, r)
			return
		}
		id, ok := tlsid.PeerIdentity(r.TLS)
		if !ok {
			http.Error(w, "a client certificate is required for "+r.URL.Path, http.StatusUnauthorized)
			return
		}
		g, err := grants()
		if err != nil {
			log.WithError(err).Error("grants file")
			if g == nil {
				http.Error(w, "no grants", http.StatusInternalServerError)
				return
			}
		}
		if allowed, why := g.httpAllowed(id.Service, r.Method, r.URL.Path, r.URL.Query()); !allowed {
			log.WithFields(logrus.Fields{"service": id.Service, "method": r.Method, "path": r.URL.Path}).Warn("nsqd HTTP call refused")
			http.Error(w, why, http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}
