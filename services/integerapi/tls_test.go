package integerapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/redisacl"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// Redis as the cluster runs it: nothing gets in without a certificate of
// the cluster's CA, and a certificate alone gives nothing without a
// user's password; integer-api's user can do what the store needs and no
// more.
func TestRedisLetsInOnlyAUserWithACertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ca := testenv.NewCA(t)
	r := testenv.StartSecureRedis(t, ca)
	ctx := context.Background()

	// The positive control: integer-api's own client, as openStore makes it.
	c := testenv.StartConsul(t)
	r.RegisterIn(t, c)
	watch := discovery.Follow(ctx, c.Client, discovery.Redis("redis"), logging.Discard())
	testenv.Eventually(t, 20*time.Second, "redis in the watch", func() bool { l, _, _ := watch.Current(); return len(l) == 1 })
	api := testenv.CertSource(t, ca, Name)
	store := NewRedisStore(DialConsulRedis(watch, ClientOptions{Username: redisacl.API, Password: r.Passwords[redisacl.API], TLS: api}),
		StoreOptions{Prefix: "loopstock", Retention: 100})
	defer store.Close()
	put(t, store, 0, 1, pc(0, 9, 100))
	if ws, err := store.Latest(ctx, 10); err != nil || len(ws) != 1 || ws[0].Sum != 100 {
		t.Fatalf("integer-api over TLS as its user: %+v, %v", ws, err)
	}
	if aof, err := store.AOF(ctx); err != nil || !aof {
		t.Errorf("AOF check as integer-api's user: %v, %v; want true", aof, err)
	}

	t.Run("plain TCP", func(t *testing.T) {
		if err := testenv.RedisRefusesAnonymous(r.Addr); err == nil {
			t.Fatal("a plaintext PING was answered -NOAUTH: Redis speaks plaintext")
		} else if strings.Contains(err.Error(), "PONG") {
			t.Fatalf("a plaintext PING: %v", err)
		}
	})
	refusedAtTLS := func(t *testing.T, cfg *tls.Config) {
		t.Helper()
		rc := redis.NewClient(&redis.Options{Addr: r.Addr, Username: redisacl.API, Password: r.Passwords[redisacl.API],
			TLSConfig: cfg, MaxRetries: -1, DialTimeout: time.Second})
		defer rc.Close()
		if err := rc.Ping(ctx).Err(); err == nil {
			t.Fatal("PING answered")
		}
	}
	t.Run("TLS without a certificate", func(t *testing.T) {
		cfg := api.ClientConfig("redis")
		cfg.GetClientCertificate = nil
		refusedAtTLS(t, cfg)
	})
	t.Run("a certificate of another CA", func(t *testing.T) {
		other, _ := devca.New(testenv.TrustDomain, "dc1")
		leaf, _ := other.Leaf(Name, time.Hour)
		cert, _ := tls.X509KeyPair(leaf, leaf)
		cfg := api.ClientConfig("redis")
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		refusedAtTLS(t, cfg)
	})
	t.Run("a valid certificate of another service, no password", func(t *testing.T) {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr, TLSConfig: testenv.CertSource(t, ca, "integer-gen").ClientConfig("redis"), MaxRetries: -1})
		defer rc.Close()
		if err := rc.Set(ctx, "loopstock:forged", "1", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("SET as the default user: %v, want NOAUTH (the default user is off)", err)
		}
	})
	t.Run("the health check's user", func(t *testing.T) {
		rc := r.Client(t, "redis", redisacl.Health)
		if err := rc.Ping(ctx).Err(); err != nil {
			t.Errorf("PING: %v", err)
		}
		if err := rc.Get(ctx, "loopstock:windows").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("GET as the health user: %v, want NOPERM", err)
		}
	})
	t.Run("integer-api's user runs nothing dangerous", func(t *testing.T) {
		rc := r.Client(t, Name, redisacl.API)
		for _, cmd := range [][]any{{"flushall"}, {"config", "set", "appendonly", "no"}, {"config", "get", "masterauth"},
			{"keys", "*"}, {"module", "list"}, {"script", "flush"}, {"set", "other:key", "1"}, {"acl", "list"}, {"shutdown"},
			{"eval", "return redis.call('flushall')", "0"}} {
			if err := rc.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't run this command") {
				t.Errorf("%v as integer-api: %v, want NOPERM", cmd, err)
			}
		}
	})
}

// integer-api's writes as the cluster takes them: only on the mutual-TLS
// listener, only with the averager's certificate and the token.
func TestWindowWritesNeedTheAveragersCertificateAndTheToken(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and redis-server")
	}
	ca := testenv.NewCA(t)
	r := testenv.StartSecureRedis(t, ca)
	c := testenv.StartConsul(t)
	r.RegisterIn(t, c)
	f := testenv.CertFiles(t, ca, Name)
	o, err := ParseArgs([]string{"--consul-addr", c.HTTPAddr, "--http-addr", testenv.Addr(testenv.FreePort(t)),
		"--write-addr", testenv.Addr(testenv.FreePort(t)), "--tls-cert-file", f.Cert, "--tls-roots-file", f.Roots,
		"--redis-user", redisacl.API, "--redis-password", r.Passwords[redisacl.API], "--write-token", token})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, logging.Discard()) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	c.WaitPassing(t, Name, 1, 20*time.Second)

	start := time.UnixMilli(5000).UTC()
	body, _ := json.Marshal(windowapi.Write{Fence: 1, End: start.Add(5 * time.Second),
		Pieces: []windowapi.Piece{{Instance: "0123456789abcdef0123456789abcdef", FirstSeq: 0, LastSeq: 9, Count: 10, Sum: 100}}})
	send := func(client *http.Client, base, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, base+windowapi.Path(start), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var e windowapi.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code + ": " + e.Message
	}
	secure := "https://" + o.WriteAddr
	as := func(service string) *http.Client {
		return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: testenv.CertSource(t, ca, service).ClientConfig(Name)}}
	}
	other, _ := devca.New(testenv.TrustDomain, "dc1")
	leaf, _ := other.Leaf("integeraverage-cal", time.Hour)
	strangerCert, _ := tls.X509KeyPair(leaf, leaf)
	stranger := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		Certificates: []tls.Certificate{strangerCert}}}}
	noCert := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	for _, c := range []struct {
		what   string
		client *http.Client
		base   string
		token  string
		want   int
	}{
		{"plain HTTP with the token", http.DefaultClient, "http://" + o.HTTPAddr, token, 403},
		{"plain HTTP to the TLS listener", http.DefaultClient, "http://" + o.WriteAddr, token, 400},
		{"TLS without a certificate", noCert, secure, token, 0},
		{"a certificate of another CA", stranger, secure, token, 0},
		{"integer-gen's certificate", as("integer-gen"), secure, token, 0},
		{"the averager's certificate without the token", as("integeraverage-cal"), secure, "wrong-token", 401},
	} {
		if got, msg := send(c.client, c.base, c.token); got != c.want {
			t.Errorf("%s: %d %q, want %d", c.what, got, msg, c.want)
		}
	}
	if n, _ := r.Client(t, Name, redisacl.API).Exists(context.Background(), "loopstock:w:5000").Result(); n != 0 {
		t.Fatal("a refused write reached the store")
	}

	// The positive control: the averager's own client, through Consul's write_port.
	w := windowapi.NewClient(discovery.New(ctx, c.Client, Name, logging.Discard()), token, 3*time.Second).
		WithTLS(testenv.CertSource(t, ca, "integeraverage-cal"), Name)
	var res windowapi.WriteResult
	testenv.Eventually(t, 10*time.Second, "the averager's write to succeed", func() bool {
		res, err = w.Put(ctx, start, windowapi.Write{Fence: 1, End: start.Add(5 * time.Second),
			Pieces: []windowapi.Piece{{Instance: "0123456789abcdef0123456789abcdef", FirstSeq: 0, LastSeq: 9, Count: 10, Sum: 100}}})
		return err == nil
	})
	if res.Sum != 100 {
		t.Errorf("the averager's write: %+v", res)
	}
	// Reads stay open to operators on the plain listener.
	var last windowapi.Window
	if code, err := testenv.GetJSON("http://"+o.HTTPAddr+"/v1/integers/last", &last); code != 200 || err != nil || last.Sum != 100 {
		t.Errorf("GET /v1/integers/last on the plain listener: %d %v %+v", code, err, last)
	}
}

// Redis replays its AOF at start as the default user, and re-checks each
// transaction's commands against that user's rules: with the default user
// off *and* without permissions, every transaction (each merged window)
// was refused and left out, and a restart lost the history.
func TestTheStoreKeepsItsWindowsAcrossARestartWithACLs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ca := testenv.NewCA(t)
	r := testenv.StartSecureRedis(t, ca)
	api := testenv.CertSource(t, ca, Name)
	store := NewRedisStore(redis.NewClient(&redis.Options{Addr: r.Addr, Username: redisacl.API, Password: r.Passwords[redisacl.API],
		TLSConfig: api.ClientConfig(RedisIdentity), MaxRetries: 3}), StoreOptions{Prefix: "loopstock", Retention: 100})
	defer store.Close()
	for i := 0; i < 3; i++ {
		put(t, store, 5*i, 1, pc(0, 9, int64(100+i)))
	}
	r.Stop(10 * time.Second)
	r.Start()
	testenv.Eventually(t, 20*time.Second, "redis back", func() bool {
		return r.Client(t, "redis", redisacl.Health).Ping(context.Background()).Err() == nil
	})
	ws, err := store.Latest(context.Background(), 10)
	if err != nil || len(ws) != 3 {
		t.Fatalf("after a restart the store holds %d windows (%v), want the 3 written before it:\n%s", len(ws), err, r.Output())
	}
	if strings.Contains(r.Output(), "AOF-loading-client") {
		t.Errorf("Redis refused part of its AOF at start:\n%s", r.Output())
	}
}
