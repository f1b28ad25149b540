package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// Consul is a dev agent (a single-node server in memory).
type Consul struct {
	*Proc
	HTTPAddr string
	Client   *consul.Client
}

// StartConsul starts a Consul dev agent (state in memory) and waits until
// it has a leader.
func StartConsul(t testing.TB) *Consul { return startConsul(t, false) }

// StartConsulServer starts a single-node Consul server that keeps its
// state on disk, so it can be killed and restarted without losing KV data,
// sessions or the Raft index (which fencing tokens come from).
func StartConsulServer(t testing.TB) *Consul { return startConsul(t, true) }

func startConsul(t testing.TB, persistent bool) *Consul {
	t.Helper()
	http := FreePort(t)
	mode := []string{"-dev"}
	if persistent {
		mode = []string{"-server", "-bootstrap-expect", "1", "-data-dir", t.TempDir(), "-hcl", "performance { raft_multiplier = 1 }"}
	}
	p := NewProc(t, "consul", Tool(t, "consul"), append(append([]string{"agent"}, mode...), "-node", "testnode",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(http), "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-server-port", strconv.Itoa(FreePort(t)), "-serf-lan-port", strconv.Itoa(FreePort(t)),
		"-serf-wan-port", "-1", "-hcl", "disable_update_check = true", "-hcl", "enable_script_checks = true", // loopback-only test agent: lets tests register redis-cli ping checks

		"-log-level", "warn")...)
	p.Start()
	cfg := consul.DefaultConfig()
	cfg.Address = Addr(http)
	client, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &Consul{Proc: p, HTTPAddr: Addr(http), Client: client}
	c.WaitReady(t)
	return c
}

// WaitReady waits until the agent answers, has a leader, and its node is
// in the catalog: until then Consul refuses to create a session ("Missing
// node registration").
func (c *Consul) WaitReady(t testing.TB) {
	t.Helper()
	Eventually(t, 30*time.Second, "consul to elect a leader and register its node", func() bool {
		l, err := c.Client.Status().Leader()
		if err != nil || l == "" {
			return false
		}
		name, err := c.Client.Agent().NodeName()
		if err != nil {
			return false
		}
		n, _, err := c.Client.Catalog().Node(name, nil)
		return err == nil && n != nil && n.Node != nil
	})
}

// Register registers an infrastructure service with an HTTP or TCP check,
// as the local stack's service definitions do.
func (c *Consul) Register(t testing.TB, name, id string, port int, meta map[string]string, check *consul.AgentServiceCheck) {
	t.Helper()
	err := c.Client.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		Name: name, ID: id, Address: "127.0.0.1", Port: port, Meta: meta, Check: check,
	})
	if err != nil {
		t.Fatalf("registering %s: %v", id, err)
	}
}

// WaitPassing waits until n instances of service pass their checks.
func (c *Consul) WaitPassing(t testing.TB, service string, n int, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, strconv.Itoa(n)+" passing "+service+" in consul", func() bool {
		e, _, err := c.Client.Health().Service(service, "", true, nil)
		return err == nil && len(e) == n
	})
}

// NSQ is one nsqlookupd and one nsqd.
type NSQ struct {
	Lookupd, NSQD                      *Proc
	LookupdTCP, LookupdHTTP            string
	NSQDTCP, NSQDHTTP                  string
	lookupdTCPPort, lookupdHTTPPort    int
	nsqdTCPPort, nsqdHTTPPort, dataDir string
}

// StartNSQ starts nsqlookupd and an nsqd (messages on disk) that reports to it.
func StartNSQ(t testing.TB) *NSQ { return startNSQ(t, nil) }

// NSQDTLS is how the cluster runs nsqd: TLS required on TCP with a client
// certificate from the CA, AUTH checked by nsqd-gate's auth server, and
// the HTTP API on loopback only (its own HTTPS listener too: nsqd reads an
// empty --https-address as its default, every interface).
type NSQDTLS struct {
	Cert, Roots string // nsqd's certificate and key (one file), and the CA's roots
	AuthAddr    string // nsqd-gate's --auth-addr
}

// StartNSQTLS is StartNSQ with nsqd as the cluster runs it.
func StartNSQTLS(t testing.TB, o NSQDTLS) *NSQ {
	// -tls-required takes its value after "=" only: a separate "tcp-https"
	// would be an argument and the flag true (TLS on loopback HTTP too).
	return startNSQ(t, []string{"-tls-cert", o.Cert, "-tls-key", o.Cert, "-tls-root-ca-file", o.Roots,
		"-tls-required=tcp-https", "-tls-client-auth-policy", "require-verify", "-tls-min-version", "tls1.2",
		"-https-address", Addr(FreePort(t)), "-auth-http-address", o.AuthAddr})
}

func startNSQ(t testing.TB, nsqdArgs []string) *NSQ {
	t.Helper()
	n := &NSQ{}
	lt, lh, dt, dh := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	n.LookupdTCP, n.LookupdHTTP, n.NSQDTCP, n.NSQDHTTP = Addr(lt), Addr(lh), Addr(dt), Addr(dh)
	n.Lookupd = NewProc(t, "nsqlookupd", Tool(t, "nsqlookupd"), "-tcp-address", n.LookupdTCP, "-http-address", n.LookupdHTTP,
		"-broadcast-address", "127.0.0.1", "-log-level", "warn")
	n.NSQD = newNSQD(t, n, nsqdArgs)
	n.Lookupd.Start()
	n.NSQD.Start()
	WaitHTTP(t, "http://"+n.LookupdHTTP+"/ping")
	WaitHTTP(t, "http://"+n.NSQDHTTP+"/ping")
	return n
}

func newNSQD(t testing.TB, n *NSQ, args []string) *Proc {
	return NewProc(t, "nsqd", Tool(t, "nsqd"), append([]string{"-tcp-address", n.NSQDTCP, "-http-address", n.NSQDHTTP,
		"-lookupd-tcp-address", n.LookupdTCP, "-broadcast-address", "127.0.0.1", "-data-path", t.TempDir(),
		"-mem-queue-size", "0", "-log-level", "warn"}, args...)...)
}

// StartImpostorNSQD starts a plaintext nsqd that registers with the
// nsqlookupd at lookupdTCP, as anyone on the network could: for the tests
// that a client does not trust nsqlookupd's answers. Only its NSQD fields
// are set.
func StartImpostorNSQD(t testing.TB, lookupdTCP string) *NSQ {
	t.Helper()
	n := &NSQ{LookupdTCP: lookupdTCP, NSQDTCP: Addr(FreePort(t)), NSQDHTTP: Addr(FreePort(t))}
	n.NSQD = newNSQD(t, n, nil)
	n.NSQD.Start()
	WaitHTTP(t, "http://"+n.NSQDHTTP+"/ping")
	return n
}

// RegisterIn registers nsqlookupd and nsqd in c, as the local stack does.
func (n *NSQ) RegisterIn(t testing.TB, c *Consul) {
	t.Helper()
	_, lh, _ := net.SplitHostPort(n.LookupdHTTP)
	_, lt, _ := net.SplitHostPort(n.LookupdTCP)
	_, dt, _ := net.SplitHostPort(n.NSQDTCP)
	_, dh, _ := net.SplitHostPort(n.NSQDHTTP)
	port := func(s string) int { p, _ := strconv.Atoi(s); return p }
	c.Register(t, "nsqlookupd", "nsqlookupd-"+lh, port(lh), map[string]string{"tcp_port": lt},
		&consul.AgentServiceCheck{HTTP: "http://" + n.LookupdHTTP + "/ping", Interval: "1s", Timeout: "1s"})
	c.Register(t, "nsqd", "nsqd-"+dt, port(dt), map[string]string{"http_port": dh},
		&consul.AgentServiceCheck{HTTP: "http://" + n.NSQDHTTP + "/ping", Interval: "1s", Timeout: "1s"})
}

// GetJSON GETs url (2 s timeout) and decodes its body into v (when v is
// not nil), returning the status code.
func GetJSON(url string, v any) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if v == nil {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %w", url, err)
	}
	return resp.StatusCode, nil
}

// WaitHTTP waits until url answers 200.
func WaitHTTP(t testing.TB, url string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	Eventually(t, 20*time.Second, url+" to answer", func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Redis is a redis-server with its append-only file on.
type Redis struct {
	*Proc
	Addr string
	Port int
}

// StartRedis starts redis-server with appendonly yes and appendfsync always.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	port := FreePort(t)
	r := &Redis{Addr: Addr(port), Port: port}
	r.Proc = NewProc(t, "redis", Tool(t, "redis-server"), "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", t.TempDir(), "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--loglevel", "warning")
	r.Start()
	r.WaitReady(t)
	return r
}

// WaitReady waits until Redis answers PING.
func (r *Redis) WaitReady(t testing.TB) {
	t.Helper()
	Eventually(t, 20*time.Second, "redis to answer PING", func() bool { return redisPing(r.Addr) })
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write([]byte("PING\r\n"))
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// RegisterIn registers Redis in c with a check that PINGs it (a stopped
// Redis still accepts TCP, so a TCP check would not do).
func (r *Redis) RegisterIn(t testing.TB, c *Consul) {
	t.Helper()
	c.Register(t, "redis", "redis-"+strconv.Itoa(r.Port), r.Port, nil, &consul.AgentServiceCheck{
		Args: []string{Tool(t, "redis-cli"), "-h", "127.0.0.1", "-p", strconv.Itoa(r.Port), "ping"}, Interval: "1s", Timeout: "1s",
	})
}

// RedisRefusesAnonymous sends a PING without AUTH to the Redis at addr:
// nil when Redis answers that it requires authentication.
func RedisRefusesAnonymous(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(reply, "-NOAUTH") {
		return fmt.Errorf("Redis at %s answered a PING without AUTH with %q", addr, strings.TrimSpace(reply))
	}
	return nil
}
