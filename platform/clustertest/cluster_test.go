// Package clustertest boots the whole cluster, 3 servers and 2 clients, from
// the Ignition rendered from ignition/ (the code Terraform and Vagrant use),
// delivers the secrets as the provisioning does, and checks the cluster
// from the outside, one named check per property (see docs/provisioning.md,
// "How the cluster is tested").
package clustertest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopstock/loopstock/platform/cluster"
	"github.com/loopstock/loopstock/platform/flatcar"
)

const (
	bridge     = "lsbr0"
	subnet     = "10.88.0.0/24"
	testAddr   = "10.88.0.1"
	datacenter = "dc1"
)

var skipReason string

// TestMain runs the test in a network namespace of its own (only loopback
// and the bridge it makes), or says in one line why it cannot run here.
func TestMain(m *testing.M) {
	flag.Parse()
	if !cluster.InOwnNetwork() {
		if skipReason = prerequisites(); skipReason == "" {
			// The base root is made here, while the machine's network (and
			// its Debian packages) can still be reached.
			if _, err := cluster.BaseRoot(cacheDir(), func(f string, a ...any) { fmt.Printf(f+"\n", a...) }); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			code, err := cluster.ReexecInOwnNetwork()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

func prerequisites() string {
	if testing.Short() {
		return "-short"
	}
	if os.Geteuid() != 0 {
		return "not root (it boots containers and makes a network namespace): run `sudo make test-cluster`"
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "mksquashfs", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: `make test-cluster` installs it (systemd-container, debootstrap, squashfs-tools, iproute2)"
		}
	}
	for _, b := range []string{"CONSUL_BIN", "NOMAD_BIN", "IGNITION_BIN"} {
		if binary(b) == "" {
			return b + " not set and " + strings.ToLower(strings.TrimSuffix(b, "_BIN")) + " not on PATH: `make test-cluster` finds them (Nomad in ../shared/tools or NOMAD_BIN)"
		}
	}
	return ""
}

// cacheDir keeps what is slow to make (the base root, the sysext images)
// across runs, outside the checkout.
func cacheDir() string {
	if d := os.Getenv("LOOPSTOCK_CLUSTER_CACHE"); d != "" {
		return d
	}
	return "/var/cache/loopstock"
}

func binary(env string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, _ := exec.LookPath(strings.ToLower(strings.TrimSuffix(env, "_BIN")))
	return p
}

// step logs what the test waits for, with the time since start.
type stepper struct {
	t     *testing.T
	start time.Time
}

func (s *stepper) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("[%5.1fs] %s", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func TestCluster(t *testing.T) {
	if skipReason != "" {
		t.Skip("cluster test skipped: " + skipReason)
	}
	st := &stepper{t: t, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	cache := cacheDir()
	base, err := cluster.BaseRoot(cache, st.logf)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Bridge(bridge, testAddr+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.EnsureLoopDevices(); err != nil {
		t.Fatal(err)
	}

	// The sysext images, in the bakery's layout, from the binaries under test.
	images := filepath.Join(cache, "sysext")
	os.MkdirAll(images, 0o755)
	consulImg := cluster.Sysext{Name: "consul", Version: "1.14.11", Binary: binary("CONSUL_BIN"), Unit: cluster.ConsulUnit}
	nomadImg := cluster.Sysext{Name: "nomad", Version: "1.6.5", Binary: binary("NOMAD_BIN"), Unit: cluster.NomadUnit}
	st.logf("building the sysext images from %s and %s", consulImg.Binary, nomadImg.Binary)
	consulPath, consulSum, err := consulImg.Build(images)
	if err != nil {
		t.Fatal(err)
	}
	nomadPath, nomadSum, err := nomadImg.Build(images)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", testAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	baseURL := "http://" + ln.Addr().String() + "/sysext"
	var served sync.Map // URL path → file
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := served.Load(r.URL.Path); ok {
			http.ServeFile(w, r, p.(string))
			return
		}
		http.NotFound(w, r)
	}))
	serve := func(urlPath, file string) string {
		served.Store(urlPath, file)
		return "http://" + ln.Addr().String() + urlPath
	}

	serverIPs := []string{"10.88.0.11", "10.88.0.12", "10.88.0.13"}
	clientIPs := []string{"10.88.0.21", "10.88.0.22"}
	spec := flatcar.Cluster{
		Datacenter: datacenter, ServerCount: 3, RetryJoin: serverIPs, ClusterCIDR: subnet,
		SSHAuthorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClusterTestClusterTestClusterTestClusterTe test",
		FlatcarChannel:   "stable", NTPServers: []string{"0.flatcar.pool.ntp.org"},
		ConsulVersion: consulImg.Version, NomadVersion: nomadImg.Version, ConsulSHA256: consulSum, NomadSHA256: nomadSum,
		SysextBaseURL: baseURL,
	}
	// LOOPSTOCK_IGNITION_DIR boots another copy of the Butane sources (to
	// show that a defect put back fails here).
	ignDir := "../../ignition"
	if d := os.Getenv("LOOPSTOCK_IGNITION_DIR"); d != "" {
		ignDir = d
	}
	secrets, err := flatcar.GenerateSecrets(datacenter, serverIPs, len(clientIPs))
	if err != nil {
		t.Fatal(err)
	}

	// Ignition writes a user's SSH keys as that user: every directory above
	// the hosts' roots must let it through.
	work := t.TempDir()
	os.Chmod(work, 0o755)
	os.Chmod(filepath.Dir(work), 0o755)
	var hosts []*cluster.Host
	var newHostIn func(work, name, role string, i int, ip string) *cluster.Host
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Poweroff()
		}
	})
	newHost := func(name, role string, i int, ip string) *cluster.Host { return newHostIn(work, name, role, i, ip) }
	newHostIn = func(work, name, role string, i int, ip string) *cluster.Host {
		var cfg []byte
		if role == "server" {
			cfg, err = spec.Server(ignDir, i)
		} else {
			cfg, err = spec.Client(ignDir)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range sysextSources(t, cfg) {
			switch {
			case strings.Contains(filepath.Base(u), "consul"):
				serve(u, consulPath)
			case strings.Contains(filepath.Base(u), "nomad"):
				serve(u, nomadPath)
			}
		}
		h, err := cluster.NewHost(work, base, name, role, i, ip, 24)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
		if _, err := cluster.ApplyIgnition(binary("IGNITION_BIN"), cfg, h); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WritePlatformNetwork(h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	st.logf("applying each host's Ignition with the real engine")
	var servers, clients []*cluster.Host
	for i, ip := range serverIPs {
		servers = append(servers, newHost(fmt.Sprintf("server-%d", i+1), "server", i, ip))
	}
	for i, ip := range clientIPs {
		clients = append(clients, newHost(fmt.Sprintf("client-%d", i+1), "client", i, ip))
	}
	c := &cl{t: t, st: st, ctx: ctx, hosts: hosts, servers: servers, clients: clients, secrets: secrets}
	replacements := 0
	c.replace = func(old *cluster.Host) (*cluster.Host, error) {
		old.Poweroff() // already killed: this unmounts its root, which is thrown away
		replacements++
		dir := filepath.Join(work, fmt.Sprintf("replacement-%d", replacements))
		fresh := newHostIn(dir, old.Name, old.Role, old.Index, old.IP)
		if err := fresh.Boot(bridge); err != nil {
			return nil, err
		}
		c.waitBooted(fresh)
		c.deliverSecrets(fresh, secrets)
		for i, h := range c.hosts {
			if h == old {
				c.hosts[i] = fresh
			}
		}
		for i, h := range c.clients {
			if h == old {
				c.clients[i] = fresh
			}
		}
		return fresh, nil
	}
	defer c.explainFailure()

	st.logf("booting %d hosts", len(hosts))
	for _, h := range hosts {
		if err := h.Boot(bridge); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hosts {
		c.waitBooted(h)
	}
	if c.check("the NAT address 10.0.2.15 on every host, holding the default route", c.natFirst)+
		c.check("sysext images merged", c.sysextMerged) > 0 {
		t.FailNow()
	}

	st.logf("delivering the secrets as the provisioning does")
	for _, h := range hosts {
		c.deliverSecrets(h, secrets)
	}
	c.connectAPIs()
	c.waitFor("3 Consul servers with a leader", 3*time.Minute, c.consulPeers)
	c.waitFor("the ACL bootstrap", 3*time.Minute, c.aclBootstrapped)
	c.waitFor("3 Nomad servers with a leader", 3*time.Minute, c.nomadServers)
	c.waitFor("2 ready Nomad clients", 3*time.Minute, c.nomadClients)
	c.waitFor("every node ready (loopstock-node-ready exited)", 3*time.Minute, c.nodesReady)

	failed := c.check("no failed unit, every loopstock unit as designed", c.unitsAsDesigned)
	c.check("Consul ACLs deny by default", c.aclDefaultDeny)
	c.check("the services' token can do what the services need, nothing more", c.servicesToken)
	c.check("Prometheus's token reads the catalog, writes nothing", c.prometheusToken)
	tls := c.check("HTTPS only, verified with the cluster's CA; Nomad refuses a client without a certificate", c.tlsOnly)
	c.check("Nomad ACLs on", c.nomadACL)
	c.check("the Consul UI answers operators over HTTPS", c.consulUI)
	gossip := c.check("gossip encrypted: an agent without the key cannot join", c.gossipEncrypted)
	dns := c.check("Consul DNS answers consul.service.consul on a client", c.consulDNS)
	rotation := c.check("a secret rotation restarts what uses the secrets, and only that", c.rotation)
	reboot := c.check("reboot coordination: one node at a time, a dead holder does not block", c.rebootCycle)

	if t.Failed() {
		return
	}
	summary := fmt.Sprintf("hosts=%d failed_units=%d consul_peers=3 nomad_clients=2 acl_default_deny=ok tls=%s gossip=%s dns=%s rotation=%s reboot_cycle=%s",
		len(hosts), failed, ok(tls), ok(gossip), ok(dns), ok(rotation), ok(reboot))
	// LOOPSTOCK_CLUSTER_JOBS=0 stops after the hosts' checks.
	if os.Getenv("LOOPSTOCK_CLUSTER_JOBS") == "0" {
		fmt.Println(summary)
		return
	}
	st.logf("deploying the jobs as nomad/README.md says")
	jobs, err := c.deployJobs(serve)
	if err != nil {
		t.Fatal(err)
	}
	api := "ok"
	if !jobs.api {
		api = "slow"
		t.Errorf("no window with count 100 within 30 s of the jobs being healthy")
	}
	var dp *dataPlaneResult
	dataPlaneFailed := c.check("the data plane lets no stranger in: dataplane-probe as a batch job without a certificate, and with integer-api's, is refused every publish, subscription, nsqd HTTP call, Redis write and window write", func() (err error) {
		dp, err = c.intruders()
		return err
	})
	var rolloutFailed int64
	c.check("a rolling update of integer-api fails no request made through Consul", func() (err error) {
		rolloutFailed, err = c.rollout()
		return err
	})
	var losses []hostLoss
	lossFailed := c.check("every leaf certificate renewed at once (a root rotation) and then every role's host lost in turn under load (the leader server, the Redis primary's client, the active averager's client, a replaced client): every service passing again, the host back, no window lost or doubled", func() (err error) {
		losses, err = c.hostLosses()
		for _, l := range losses {
			if l.role != "leader server" && l.recovered > clientLossWithin && err == nil {
				err = fmt.Errorf("%s: services passing again %s after the loss, docs/operations.md says within %s", l.role, l.recovered.Round(time.Second), clientLossWithin)
			}
		}
		return err
	})
	var mon *monitoringResult
	c.check("monitoring: Prometheus finds every instance through Consul, every dashboard query has data, every rule evaluates, a stopped averager's alert reaches Alertmanager and resolves", func() (err error) {
		mon, err = c.monitoring()
		return err
	})
	if t.Failed() {
		return
	}
	var readGap, writeGap time.Duration
	lost, doubled := 0, 0
	for _, l := range losses {
		readGap, writeGap = max(readGap, l.readGap), max(writeGap, l.writeGap)
		lost, doubled = lost+l.lost, doubled+l.dup
	}
	if c.leafRotation != nil {
		lost, doubled = lost+c.leafRotation.lost, doubled+c.leafRotation.doubled
	}
	fmt.Printf("%s jobs=%d/%d passing=%d/%d api=%s data_plane=%s intruder_refused=%d/%d cert_rotation=%s rollout_failed=%d host_loss=%d/4 lost=%d doubled=%d read_gap_max=%.1f write_gap_max=%.1f replaced_client=%s monitoring=ok targets=%d/%d dashboard_exprs=%d/%d rules=%d alert_fired=ok\n", summary,
		jobs.jobsRunning, jobs.jobs, jobs.passing, jobs.services, api, ok(dataPlaneFailed), dp.refused, dp.attempts, ok(lossFailed), rolloutFailed, len(losses), lost, doubled,
		readGap.Seconds(), writeGap.Seconds(), ok(lossFailed), mon.targetsUp, mon.targets, mon.exprsData, mon.exprs, mon.rules)
}

func ok(b int) string {
	if b == 0 {
		return "ok"
	}
	return "failed"
}

// sysextSources are the remote file URLs of a rendered config: what the
// test's file server must answer.
func sysextSources(t *testing.T, ign []byte) []string {
	var cfg struct {
		Storage struct {
			Files []struct {
				Contents struct {
					Source *string `json:"source"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal(ign, &cfg); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range cfg.Storage.Files {
		if s := f.Contents.Source; s != nil && strings.HasPrefix(*s, "http://") {
			u := strings.SplitN(strings.TrimPrefix(*s, "http://"), "/", 2)
			paths = append(paths, "/"+u[1])
		}
	}
	if len(paths) != 2 {
		t.Fatalf("expected the consul and nomad sysext images as remote files, found %v", paths)
	}
	return paths
}
