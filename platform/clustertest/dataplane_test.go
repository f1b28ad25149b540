package clustertest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis/v8"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/intruder"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/redisacl"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/tlsid"
	"github.com/loopstock/loopstock/internal/windowcheck"
	"github.com/loopstock/loopstock/platform/deploy"
)

// The test's own place on the data plane: an auditor's leaf from Consul's
// CA (deploy.AuditService, granted the audit channel and nsqd's stats),
// and integer-api's leaf for its look at Redis and the Sentinels, with
// the secrets make nomad-run kept in .data. Both are written again when
// Consul renews them (certs).
type creds struct {
	dir   string
	audit *tlsid.Source
	api   *tlsid.Source
}

// leaf writes service's leaf and the roots, as Consul's agent gives them
// to the operator, into dir.
func (c *cl) leaf(dir, service string) (tlsid.Files, error) {
	f := tlsid.Files{Cert: filepath.Join(dir, service+".pem"), Roots: filepath.Join(dir, "roots.pem")}
	leaf, _, err := c.consulClient.Agent().ConnectCALeaf(service, nil)
	if err != nil {
		return f, fmt.Errorf("leaf certificate of %s from Consul: %w", service, err)
	}
	roots, _, err := c.consulClient.Agent().ConnectCARoots(nil)
	if err != nil {
		return f, err
	}
	var all strings.Builder
	for _, r := range roots.Roots {
		all.WriteString(r.RootCertPEM)
	}
	if err := replaceFile(f.Cert, leaf.CertPEM+leaf.PrivateKeyPEM, 0o600); err != nil {
		return f, err
	}
	return f, replaceFile(f.Roots, all.String(), 0o644)
}

func replaceFile(path, data string, mode os.FileMode) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// certs fetches (again) the test's leaves; tlsid reads the files anew.
func (c *cl) certs() (*creds, error) {
	if c.creds == nil {
		c.creds = &creds{dir: c.t.TempDir()}
	}
	for _, s := range []struct {
		service string
		dst     **tlsid.Source
	}{{deploy.AuditService, &c.creds.audit}, {redisacl.API, &c.creds.api}} {
		f, err := c.leaf(c.creds.dir, s.service)
		if err != nil {
			return nil, err
		}
		if *s.dst == nil {
			if *s.dst, err = tlsid.Load(f); err != nil {
				return nil, err
			}
		}
	}
	return c.creds, nil
}

func dataSecret(name string) string {
	b, _ := os.ReadFile(filepath.Join(repoDir, ".data", name))
	return strings.TrimSpace(string(b))
}

// auditClient is the auditor's credentials for nsqd.
func (c *cl) auditClient() (nsqtls.Client, error) {
	cr, err := c.certs()
	if err != nil {
		return nsqtls.Client{}, err
	}
	return nsqtls.Client{TLS: cr.audit, Secret: dataSecret("nsq-secret-audit")}, nil
}

// redisOptions reach the Redis or Sentinel at addr as integer-api's user,
// with its certificate.
func (c *cl) redisOptions(addr string) *redis.Options {
	o := &redis.Options{Addr: addr, Username: redisacl.API, Password: redisPassword(),
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1}
	if cr, err := c.certs(); err == nil {
		o.TLSConfig = cr.api.ClientConfig("redis", "redis-sentinel")
	}
	return o
}

// dataPlaneResult is what the data plane's checks report on the summary
// line.
type dataPlaneResult struct {
	attempts, refused int
}

// intruders runs dataplane-probe as two batch jobs on the clients, one
// with no certificate and one holding integer-api's (a taken-over host of
// another service): each tries to publish to a probe topic, subscribe to
// the averager's channel, call nsqd's HTTP API, write to Redis, write a
// window, and register an impostor nsqd with nsqlookupd for the averager
// to subscribe to. Every attempt must be refused.
func (c *cl) intruders() (*dataPlaneResult, error) {
	targets, err := c.probeTargets()
	if err != nil {
		return nil, err
	}
	res := &dataPlaneResult{}
	for _, withCert := range []bool{false, true} {
		name := "intruder-without-certificate"
		if withCert {
			name = "intruder-with-integer-api-certificate"
		}
		attempts, err := c.runProbe(name, targets, withCert)
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		var let []string
		for _, a := range attempts {
			res.attempts++
			if a.Refused {
				res.refused++
			} else {
				let = append(let, a.Name)
			}
			c.st.logf("%s: %s: refused=%v (%s)", name, a.Name, a.Refused, tailString(a.Detail, 1))
		}
		if len(let) > 0 {
			return res, fmt.Errorf("%s was let in: %s", name, strings.Join(let, "; "))
		}
		if len(attempts) != 10 {
			return res, fmt.Errorf("%s made %d attempts, want 10 (a target missing?)", name, len(attempts))
		}
	}
	// The impostor nsqd got no subscriber because the averager refused it,
	// not because it could not be reached.
	refused, err := c.averagerNSQDRefused()
	if err != nil {
		return res, err
	}
	if refused == 0 {
		return res, fmt.Errorf("no averager counted a refused nsqd (integeraverage_cal_nsqd_refused_total) while the probes' impostors were in nsqlookupd")
	}
	c.st.logf("the averagers refused an nsqd not in Consul %.0f times", refused)
	return res, nil
}

// averagerNSQDRefused sums integeraverage_cal_nsqd_refused_total over the
// passing averagers.
func (c *cl) averagerNSQDRefused() (float64, error) {
	avgs, err := c.passing("integeraverage-cal")
	if err != nil || len(avgs) == 0 {
		return 0, fmt.Errorf("no passing integeraverage-cal: %v", err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	sum := 0.0
	for _, a := range avgs {
		resp, err := hc.Get("http://" + a + "/metrics")
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "integeraverage_cal_nsqd_refused_total "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					resp.Body.Close()
					return 0, fmt.Errorf("%s/metrics: %q: %w", a, sc.Text(), err)
				}
				sum += f
			}
		}
		resp.Body.Close()
	}
	return sum, nil
}

// probeTargets are a passing nsqd (its TCP port and nsqd-gate; its own
// HTTP API is on the host's loopback, on no address to try), the
// Redis primary and a passing integer-api (both listeners).
func (c *cl) probeTargets() ([]string, error) {
	nsqds, err := c.healthy("nsqd")
	if err != nil || len(nsqds) == 0 {
		return nil, fmt.Errorf("no passing nsqd: %v", err)
	}
	apis, err := c.healthy("integer-api")
	if err != nil || len(apis) == 0 {
		return nil, fmt.Errorf("no passing integer-api: %v", err)
	}
	primary, err := c.redisPrimary()
	if err != nil {
		return nil, err
	}
	lookupds, err := c.healthy("nsqlookupd")
	if err != nil || len(lookupds) == 0 {
		return nil, fmt.Errorf("no passing nsqlookupd: %v", err)
	}
	d, a, l := nsqds[0].Service, apis[0].Service, lookupds[0].Service
	at := func(host, port string) string { return net.JoinHostPort(host, port) }
	args := []string{
		"--nsqd-tcp", at(d.Address, fmt.Sprint(d.Port)),
		"--nsqd-gate", at(d.Address, d.Meta["https_port"]), "--redis", primary,
		"--api-http", at(a.Address, fmt.Sprint(a.Port)), "--api-writes", at(a.Address, a.Meta["write_port"]),
		"--nsqlookupd-tcp", at(l.Address, l.Meta["tcp_port"]),
	}
	for i := 1; i < len(args); i += 2 {
		if strings.HasSuffix(args[i], ":") {
			return nil, fmt.Errorf("%s has no port in Consul's registration (%v)", args[i-1], args)
		}
	}
	return args, nil
}

// runProbe submits dataplane-probe as a batch job and returns its report.
func (c *cl) runProbe(name string, args []string, withCert bool) ([]intruder.Attempt, error) {
	task := nomadapi.NewTask("probe", "exec")
	task.Config = map[string]any{"command": "local/dataplane-probe", "args": args}
	task.Artifacts = []*nomadapi.TaskArtifact{{GetterSource: &c.release.url, GetterOptions: map[string]string{"checksum": "sha256:" + c.release.sha256}}}
	if withCert {
		tmpl := `{{ with caLeaf "integer-api" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}`
		dest, perms := "secrets/leaf.pem", "0600"
		task.Templates = []*nomadapi.Template{{EmbeddedTmpl: &tmpl, DestPath: &dest, Perms: &perms}}
		task.Config["args"] = append(append([]string{}, args...), "--tls-cert-file", "${NOMAD_SECRETS_DIR}/leaf.pem")
	}
	task.Resources = &nomadapi.Resources{CPU: intp(100), MemoryMB: intp(64)}
	tg := nomadapi.NewTaskGroup("probe", 1).AddTask(task)
	attempts := 0
	tg.RestartPolicy = &nomadapi.RestartPolicy{Attempts: &attempts, Mode: strp("fail")}
	tg.ReschedulePolicy = &nomadapi.ReschedulePolicy{Attempts: &attempts, Unlimited: boolp(false)}
	job := nomadapi.NewBatchJob(name, name, "global", 50).AddDatacenter(datacenter).AddTaskGroup(tg)
	if _, _, err := c.nomadClient.Jobs().Register(job, nil); err != nil {
		return nil, err
	}
	defer c.nomadClient.Jobs().Deregister(name, true, nil)
	var alloc *nomadapi.AllocationListStub
	c.waitFor(name+" finished", 3*time.Minute, func() error {
		allocs, _, err := c.nomadClient.Jobs().Allocations(name, true, nil)
		if err != nil || len(allocs) == 0 {
			return fmt.Errorf("no allocation yet (%v)", err)
		}
		alloc = allocs[0]
		if alloc.ClientStatus != "complete" && alloc.ClientStatus != "failed" {
			return fmt.Errorf("allocation %s", alloc.ClientStatus)
		}
		return nil
	})
	a, _, err := c.nomadClient.Allocations().Info(alloc.ID, nil)
	if err != nil {
		return nil, err
	}
	rc, err := c.nomadClient.AllocFS().Cat(a, "alloc/logs/probe.stdout.0", nil)
	if err != nil {
		return nil, fmt.Errorf("the probe's output: %w", err)
	}
	defer rc.Close()
	var out []intruder.Attempt
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var at intruder.Attempt
		if json.Unmarshal(sc.Bytes(), &at) == nil && at.Name != "" {
			out = append(out, at)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the probe reported nothing (allocation %s, %s)", alloc.ID, alloc.ClientStatus)
	}
	return out, nil
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }
func boolp(b bool) *bool    { return &b }

// rotationResult is what the leaf rotation reports.
type rotationResult struct {
	renewed                int // endpoints and instances seen with a leaf of the new root
	readGap, writeGap      time.Duration
	windows, lost, doubled int
}

// certRotation renews every leaf in the cluster at once: Consul's
// shortest leaf TTL is an hour (renewed at 60-90% of it), too long for a
// test, so it rotates the CA's root (a new key), and Consul re-signs every
// leaf within half a minute. Then every server presents, and every
// service reports on /health, a leaf of the new root, and the audit's
// windows equal the served ones: nothing lost or doubled.
func (c *cl) certRotation(reader *gapReader, audit *testenv.Audit, auditFrom time.Time) (*rotationResult, error) {
	res := &rotationResult{}
	conf, _, err := c.consulClient.Connect().CAGetConfig(nil)
	if err != nil {
		return nil, err
	}
	oldRoot, err := c.activeRoot()
	if err != nil {
		return nil, err
	}
	newest := reader.reset()
	started := time.Now()
	// A new key type rotates the root (a leaf TTL change would not).
	conf.Config["PrivateKeyType"], conf.Config["PrivateKeyBits"] = "ec", 384
	if _, err := c.consulClient.Connect().CASetConfig(&consulapi.CAConfig{Provider: conf.Provider, Config: conf.Config}, nil); err != nil {
		return nil, fmt.Errorf("rotating the Connect CA's root: %w", err)
	}
	var newRoot *x509.Certificate
	c.waitFor("a new active root", time.Minute, func() error {
		r, err := c.activeRoot()
		if err == nil && hex.EncodeToString(r.SubjectKeyId) == hex.EncodeToString(oldRoot.SubjectKeyId) {
			err = fmt.Errorf("the active root is still %x", r.SubjectKeyId)
		}
		newRoot = r
		return err
	})
	c.st.logf("cert rotation: new root %x (was %x)", newRoot.SubjectKeyId, oldRoot.SubjectKeyId)
	// Consul's leaves name their signer by a key ID of their own making,
	// not the root's SubjectKeyId: the test's own leaf, once it chains to
	// the new root, says what every renewed leaf names.
	var want string
	c.waitFor("the test's own leaf renewed, chaining to the new root", time.Minute, func() error {
		cr, err := c.certs()
		if err != nil {
			return err
		}
		chain, err := cr.audit.Chain()
		if err != nil {
			return err
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(newRoot)
		for _, ic := range chain[1:] {
			inter.AddCert(ic)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("the auditor's leaf does not chain to the new root yet: %v", err)
		}
		want = hex.EncodeToString(chain[0].AuthorityKeyId)
		return nil
	})
	c.waitFor("every server presents a leaf of the new root, every service reports one", 5*time.Minute, func() error {
		n, err := c.leavesOf(want)
		res.renewed = n
		return err
	})
	c.st.logf("cert rotation: %d leaves of the new root after %s", res.renewed, time.Since(started).Round(time.Second))
	c.waitFor("the store in sync after the rotation", 3*time.Minute, c.storeInSync)
	c.waitFor("a window stored after the rotation", 2*time.Minute, func() error {
		at, ok := reader.newerThan(newest)
		if !ok || at.Before(started) {
			return fmt.Errorf("newest window still %s", newest)
		}
		res.writeGap = at.Sub(started)
		return nil
	})
	res.readGap = reader.readGap()
	cmp, err := c.auditEqualsServed(audit, auditFrom, time.Now().Add(-5*time.Second))
	res.windows, res.lost, res.doubled = int(cmp.Windows), int(cmp.Lost), int(cmp.Doubled)
	return res, err
}

// activeRoot is the Connect CA's active root certificate.
func (c *cl) activeRoot() (*x509.Certificate, error) {
	roots, _, err := c.consulClient.Agent().ConnectCARoots(nil)
	if err != nil {
		return nil, err
	}
	for _, r := range roots.Roots {
		if r.Active {
			b, _ := pem.Decode([]byte(r.RootCertPEM))
			if b == nil {
				return nil, fmt.Errorf("root %s is not PEM", r.ID)
			}
			return x509.ParseCertificate(b.Bytes)
		}
	}
	return nil, fmt.Errorf("no active root among %d", len(roots.Roots))
}

// leavesOf checks that every TLS endpoint of the data plane presents, and
// every service instance reports, a leaf signed by the key ski; it
// returns how many it saw.
func (c *cl) leavesOf(ski string) (int, error) {
	cr, err := c.certs()
	if err != nil {
		return 0, err
	}
	n := 0
	var stale []string
	seen := func(what string, leaf *x509.Certificate) {
		if got := hex.EncodeToString(leaf.AuthorityKeyId); got != ski {
			stale = append(stale, fmt.Sprintf("%s (%x)", what, leaf.AuthorityKeyId))
			return
		}
		n++
	}
	// TLS from the first byte: Redis, the Sentinels, nsqd-gate, integer-api's writes.
	var endpoints []string
	for _, h := range c.clients {
		endpoints = append(endpoints, h.IP+":6379")
	}
	for _, h := range c.servers {
		endpoints = append(endpoints, h.IP+":26379")
	}
	nsqds, err := c.healthy("nsqd")
	if err != nil {
		return 0, err
	}
	for _, e := range nsqds {
		endpoints = append(endpoints, net.JoinHostPort(e.Service.Address, e.Service.Meta["https_port"]))
	}
	apis, err := c.healthy("integer-api")
	if err != nil {
		return 0, err
	}
	for _, e := range apis {
		endpoints = append(endpoints, net.JoinHostPort(e.Service.Address, e.Service.Meta["write_port"]))
	}
	cfg := cr.audit.ClientConfig()
	cfg.VerifyConnection = nil // any server: this only reads its leaf
	for _, addr := range endpoints {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return n, fmt.Errorf("TLS with %s: %v", addr, err)
		}
		seen(addr, conn.ConnectionState().PeerCertificates[0])
		conn.Close()
	}
	// nsqd's TCP port: TLS after IDENTIFY, through go-nsq.
	for _, e := range nsqds {
		addr := net.JoinHostPort(e.Service.Address, fmt.Sprint(e.Service.Port))
		auth, _ := c.auditClient()
		ncfg := nsq.NewConfig()
		auth.Apply(ncfg)
		var leaf *x509.Certificate
		verify := ncfg.TlsConfig.VerifyConnection
		ncfg.TlsConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			leaf = cs.PeerCertificates[0]
			return verify(cs)
		}
		p, _ := nsq.NewProducer(addr, ncfg)
		p.SetLogger(nil, nsq.LogLevelError)
		err := p.Ping()
		p.Stop()
		if leaf == nil {
			return n, fmt.Errorf("nsqd %s: no TLS (%v)", addr, err)
		}
		seen("nsqd "+addr, leaf)
	}
	// The services' own leaves, as each instance reports it.
	for _, service := range []string{"integer-gen", "integeraverage-cal", "integer-api"} {
		entries, err := c.healthy(service)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			var h struct {
				TLS map[string]any `json:"tls"`
			}
			url := "http://" + net.JoinHostPort(e.Service.Address, fmt.Sprint(e.Service.Port)) + "/health"
			if _, err := testenv.GetJSON(url, &h); err != nil {
				return n, err
			}
			if got := fmt.Sprint(h.TLS["authority_key_id"]); got != ski {
				stale = append(stale, fmt.Sprintf("%s %s (%s)", service, e.Service.ID, got))
			} else {
				n++
			}
		}
	}
	if len(stale) > 0 {
		return n, fmt.Errorf("still of the old root: %s", strings.Join(stale, "; "))
	}
	return n, nil
}

// auditEqualsServed compares the audit's windows from..to with integer-api's.
func (c *cl) auditEqualsServed(audit *testenv.Audit, from, to time.Time) (windowcheck.Comparison, error) {
	var cmp windowcheck.Comparison
	var last error
	c.waitFor("every window from the audit's start equal to what nsqd accepted", 3*time.Minute, func() error {
		served, err := c.servedWindows()
		if err != nil {
			return err
		}
		cmp = windowcheck.Compare(auditedBetween(audit.Windows(5*time.Second), from, to), servedBetween(served, from, to))
		if cmp.Lost != 0 || cmp.Doubled != 0 {
			last = fmt.Errorf("windows=%d lost=%d doubled=%d %v", cmp.Windows, cmp.Lost, cmp.Doubled, first(cmp.Details, 5))
			return last
		}
		return nil
	})
	return cmp, nil
}
