package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/platform/cluster"
	"github.com/loopstock/loopstock/platform/deploy"
	"github.com/loopstock/loopstock/platform/flatcar"
)

// cl is the cluster under test and the operator's view of it.
type cl struct {
	t                *testing.T
	st               *stepper
	ctx              context.Context
	hosts            []*cluster.Host
	servers, clients []*cluster.Host
	secrets          *flatcar.Secrets

	// server-1's agents as the operator reaches them: Consul with the
	// bootstrap (management) token, Nomad with the bootstrap token and the
	// CLI certificate. State is read through the typed clients; the raw ones
	// send the requests whose status code is the check.
	consulClient *consulapi.Client
	nomadClient  *nomadapi.Client
	consul       *cluster.API
	nomad        *cluster.API

	// replace powers a host off for good and boots a fresh one in its
	// place: the same Ignition, name and address, an empty disk.
	replace func(old *cluster.Host) (*cluster.Host, error)

	failedUnits int
	failedOn    *cluster.Host // the host a failing check was about, for the explanation

	creds        *creds          // the test's leaves on the data plane (dataplane_test.go)
	leafRotation *rotationResult // the leaf rotation, run first in hostLosses
	release      struct{ url, sha256 string }
}

// check runs one named check and returns 0 when it passed, 1 when not.
func (c *cl) check(name string, fn func() error) int {
	c.t.Helper()
	c.st.logf("check: %s", name)
	if err := fn(); err != nil {
		c.t.Errorf("%s: %v", name, err)
		return 1
	}
	c.st.logf("ok: %s", name)
	return 0
}

// waitFor polls cond until it holds; the last error says what was missing.
func (c *cl) waitFor(what string, timeout time.Duration, cond func() error) {
	c.t.Helper()
	c.st.logf("waiting for %s", what)
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			c.st.logf("ok: %s", what)
			return
		}
		if time.Now().After(deadline) || c.ctx.Err() != nil {
			c.t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// explainFailure prints, for a failed run, every host's failed units and
// the journal of the loopstock units and the agents.
func (c *cl) explainFailure() {
	if !c.t.Failed() {
		return
	}
	if d := os.Getenv("LOOPSTOCK_CLUSTER_KEEP"); d != "" {
		// For a person debugging: the hosts stay up (nsenter -t PID -a).
		if keep, err := time.ParseDuration(d); err == nil {
			for _, h := range c.hosts {
				pid, _ := h.Leader()
				c.t.Logf("keeping %s (init pid %d) for %s", h.Name, pid, keep)
			}
			time.Sleep(keep)
		}
	}
	for _, h := range c.hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		failed, _ := h.Sh(ctx, "systemctl --failed --no-legend --plain; systemctl list-units --all --no-legend --plain 'loopstock*' 'consul*' 'nomad*'")
		journal, _ := h.Sh(ctx, "journalctl --no-pager -o cat -n 25 -u 'loopstock*' -u systemd-sysext -u ensure-sysext; journalctl --no-pager -o cat -n 8 -u consul; journalctl --no-pager -o cat -n 8 -u nomad")
		cancel()
		c.t.Logf("==== %s: units\n%s\n==== %s: journal\n%s\n==== %s: console\n%s", h.Name, failed, h.Name, journal, h.Name, h.Console(15))
	}
	c.t.Logf("==== the store as each Redis and Sentinel sees it\n%s", c.storeState())
	if c.nomadClient != nil {
		// What make nomad-run prints of a failed deploy: each allocation's
		// checks, last events and output.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.t.Logf("==== the jobs' allocations\n%s", deploy.Diagnose(ctx, c.nomadClient, append(deploy.Jobs, "monitoring")))
	}
}

func (c *cl) sh(h *cluster.Host, script string) (string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	return h.Sh(ctx, script)
}

// waitBooted waits until the host's systemd has finished booting.
func (c *cl) waitBooted(h *cluster.Host) {
	c.t.Helper()
	c.waitFor(h.Name+" booted", 3*time.Minute, func() error {
		out, err := c.sh(h, "systemctl is-system-running")
		state := strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			return nil
		}
		if err != nil && state == "" {
			return err
		}
		return fmt.Errorf("state %q", state)
	})
}

// natFirst: every host has the NAT NIC, 10.0.2.15, holding the default
// route, so that "the first private address" would be the wrong one.
func (c *cl) natFirst() error {
	for _, h := range c.hosts {
		var out string
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ = c.sh(h, "ip -4 route show default; ip -4 -o addr show dev nat0")
			if strings.Contains(out, "dev nat0") && strings.Contains(out, "10.0.2.15/24") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no NAT NIC with the default route:\n%s", h.Name, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

func (c *cl) sysextMerged() error {
	for _, h := range c.hosts {
		out, err := c.sh(h, "systemd-sysext status --no-pager; command -v consul nomad; systemctl show -p LoadState --value consul.service nomad.service")
		if err != nil {
			return err
		}
		for _, want := range []string{"/usr/bin/consul", "/usr/bin/nomad"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("%s: %s not merged:\n%s", h.Name, want, out)
			}
		}
		if strings.Contains(out, "not-found") {
			return fmt.Errorf("%s: the images' units were not loaded:\n%s", h.Name, out)
		}
	}
	return nil
}

// deliverSecrets does what terraform/modules/provision does over SSH: run
// the install script as root on the host.
func (c *cl) deliverSecrets(h *cluster.Host, s *flatcar.Secrets) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if out, err := h.Exec(ctx, flatcar.InstallScript(s.Files(h.Role, h.Index)), "bash", "-s"); err != nil {
		c.t.Fatalf("%s: installing the secrets: %v\n%s", h.Name, err, out)
	}
}

func (c *cl) connectAPIs() { c.connectAPIsVia(c.servers[0]) }

// connectAPIsVia reaches the agents through server (another one while the
// first is down).
func (c *cl) connectAPIsVia(server *cluster.Host) {
	c.t.Helper()
	var err error
	s := c.secrets
	consulAddr, consulName, consulToken := "https://"+server.IP+":8501", "server."+datacenter+".consul", s.Tokens["consul-bootstrap"].Secret
	nomadAddr, nomadName, nomadToken := "https://"+server.IP+":4646", "server.global.nomad", s.Tokens["nomad-bootstrap"].Secret
	cli := s.Certs["cli"]
	if c.consul, err = cluster.NewAPI(consulAddr, s.CA, consulName, "", "", "X-Consul-Token", consulToken); err != nil {
		c.t.Fatal(err)
	}
	if c.consulClient, err = cluster.NewConsul(consulAddr, s.CA, consulName, "", "", consulToken); err != nil {
		c.t.Fatal(err)
	}
	if c.nomad, err = cluster.NewAPI(nomadAddr, s.CA, nomadName, cli.Cert, cli.Key, "X-Nomad-Token", nomadToken); err != nil {
		c.t.Fatal(err)
	}
	if c.nomadClient, err = cluster.NewNomad(nomadAddr, s.CA, nomadName, cli.Cert, cli.Key, nomadToken); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cl) consulPeers() error {
	leader, err := c.consulClient.Status().Leader()
	if err != nil {
		return err
	}
	peers, err := c.consulClient.Status().Peers()
	if err != nil {
		return err
	}
	if leader == "" || len(peers) != 3 {
		return fmt.Errorf("leader %q, peers %v", leader, peers)
	}
	for _, p := range peers {
		if strings.HasPrefix(p, "10.0.2.15:") {
			return fmt.Errorf("a server advertises the NAT address: peers %v", peers)
		}
	}
	return nil
}

func (c *cl) aclBootstrapped() error {
	if _, _, err := c.consulClient.ACL().TokenReadSelf(nil); err != nil {
		return err
	}
	for _, n := range flatcar.ConsulTokens {
		if _, _, err := c.consulClient.ACL().TokenRead(c.secrets.Tokens[n].Accessor, nil); err != nil {
			return fmt.Errorf("token %s: %w", n, err)
		}
	}
	return nil
}

func (c *cl) nomadServers() error {
	leader, err := c.nomadClient.Status().Leader()
	if err != nil {
		return err
	}
	peers, err := c.nomadClient.Status().Peers()
	if err != nil {
		return err
	}
	if leader == "" || len(peers) != 3 {
		return fmt.Errorf("leader %q, peers %v", leader, peers)
	}
	return nil
}

// nodes are Nomad's nodes by name.
func (c *cl) nodes() (map[string]*nomadapi.NodeListStub, error) {
	list, _, err := c.nomadClient.Nodes().List(nil)
	if err != nil {
		return nil, err
	}
	m := map[string]*nomadapi.NodeListStub{}
	for _, n := range list {
		// A replaced host registers anew under its name; the old node
		// stays, down.
		if old, ok := m[n.Name]; !ok || old.Status == "down" {
			m[n.Name] = n
		}
	}
	return m, nil
}

// nodeState is what a failing check says of a node (nil: not registered).
func nodeState(n *nomadapi.NodeListStub) string {
	if n == nil {
		return "not registered"
	}
	return fmt.Sprintf("status %s, %s, drain %t, address %s", n.Status, n.SchedulingEligibility, n.Drain, n.Address)
}

func (c *cl) nomadClients() error {
	nodes, err := c.nodes()
	if err != nil {
		return err
	}
	for _, h := range c.clients {
		n := nodes[h.Name]
		if n == nil || n.Status != "ready" || n.SchedulingEligibility != "eligible" {
			return fmt.Errorf("%s: %s", h.Name, nodeState(n))
		}
		if n.Address != h.IP {
			return fmt.Errorf("%s advertises %s, not its cluster address %s", h.Name, n.Address, h.IP)
		}
	}
	return nil
}

func (c *cl) nodesReady() error {
	for _, h := range c.hosts {
		out, _ := c.sh(h, "systemctl show -p ActiveState -p SubState --value loopstock-node-ready.service")
		if f := strings.Fields(out); len(f) != 2 || f[0] != "active" || f[1] != "exited" {
			log, _ := c.sh(h, "journalctl --no-pager -n 3 -u loopstock-node-ready -o cat")
			return fmt.Errorf("%s: loopstock-node-ready %v: %s", h.Name, f, strings.TrimSpace(log))
		}
	}
	return nil
}

// unitsAsDesigned: nothing failed anywhere, and each loopstock unit is in
// the state its design gives it.
func (c *cl) unitsAsDesigned() error {
	var problems []string
	for _, h := range c.hosts {
		out, err := c.sh(h, "systemctl --failed --no-legend --plain")
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(out); s != "" {
			c.failedUnits += len(strings.Split(s, "\n"))
			problems = append(problems, h.Name+": failed: "+s)
		}
		want := map[string]string{
			"consul.service": "active running", "nomad.service": "active running",
			"systemd-sysext.service": "active exited", "loopstock-secrets.path": "active waiting",
			"loopstock-secrets.service": "inactive dead", "loopstock-node-ready.service": "active exited",
			"loopstock-reboot.timer": "active waiting",
		}
		if h.Role == "client" {
			want["nomad-drain.service"] = "active exited"
		}
		if h.Role == "server" && h.Index == 0 {
			want["loopstock-acl-bootstrap.service"] = "active exited"
		}
		for unit, state := range want {
			out, _ := c.sh(h, "systemctl show -p ActiveState -p SubState --value "+unit)
			if got := strings.Join(strings.Fields(out), " "); got != state {
				problems = append(problems, fmt.Sprintf("%s: %s is %q, not %q", h.Name, unit, got, state))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// aclDefaultDeny and servicesToken send raw requests: the status code (a
// refusal, or what one token may do beside what it may not) is the check.
func (c *cl) aclDefaultDeny() error {
	anon := c.consul.WithToken("")
	if code, body, err := anon.Do("PUT", "/v1/kv/loopstock/anonymous", "x"); err != nil || code != 403 {
		return fmt.Errorf("anonymous KV write: %d %s %v", code, body, err)
	}
	reg := `{"Node": "intruder", "Address": "10.88.0.99"}`
	if code, body, err := anon.Do("PUT", "/v1/catalog/register", reg); err != nil || code != 403 {
		return fmt.Errorf("anonymous catalog register: %d %s %v", code, body, err)
	}
	if code, _, err := anon.Do("GET", "/v1/kv/nomad-tokens/maintenance", ""); err != nil || code != 403 && code != 404 {
		return fmt.Errorf("anonymous read of the Nomad maintenance token: %d %v", code, err)
	}
	return nil
}

func (c *cl) servicesToken() error {
	svc := c.consul.WithToken(c.secrets.Tokens["loopstock"].Secret)
	if code, body, err := svc.Do("PUT", "/v1/kv/loopstock/cluster-test", "x"); err != nil || code != 200 {
		return fmt.Errorf("KV write under loopstock/: %d %s %v", code, body, err)
	}
	if code, body, err := svc.Do("PUT", "/v1/kv/elsewhere/cluster-test", "x"); err != nil || code != 403 {
		return fmt.Errorf("KV write outside loopstock/ was not refused: %d %s %v", code, body, err)
	}
	if code, body, err := svc.Do("GET", "/v1/kv/nomad-tokens/maintenance", ""); err != nil || code != 403 && code != 404 {
		return fmt.Errorf("the services' token reads the Nomad maintenance token: %d %s %v", code, body, err)
	}
	if code, body, err := svc.Do("PUT", "/v1/session/create", `{"Name": "cluster-test", "TTL": "10s"}`); err != nil || code != 200 {
		return fmt.Errorf("session create: %d %s %v", code, body, err)
	}
	return nil
}

// prometheusToken: Prometheus's token reads what its consul_sd_configs
// reads (the datacenter from /v1/agent/self, the services, their healthy
// instances with their nodes) and writes nothing. Raw requests, as above.
func (c *cl) prometheusToken() error {
	prom := c.consul.WithToken(c.secrets.Tokens["prometheus"].Secret)
	if code, body, err := prom.Do("GET", "/v1/agent/self", ""); err != nil || code != 200 ||
		!regexp.MustCompile(`"Datacenter":\s*"`+datacenter+`"`).Match(body) {
		return fmt.Errorf("agent self (the datacenter): %d %.200s %v", code, body, err)
	}
	if code, body, err := prom.Do("GET", "/v1/catalog/services", ""); err != nil || code != 200 || !strings.Contains(string(body), `"consul"`) {
		return fmt.Errorf("catalog services, consul among them: %d %.200s %v", code, body, err)
	}
	// Without node read Consul filters every instance out: an empty list.
	if code, body, err := prom.Do("GET", "/v1/health/service/consul", ""); err != nil || code != 200 || !strings.Contains(string(body), `"Node"`) {
		return fmt.Errorf("health of the consul service, with its nodes: %d %.200s %v", code, body, err)
	}
	if code, body, err := prom.Do("PUT", "/v1/kv/loopstock/prometheus-test", "x"); err != nil || code != 403 {
		return fmt.Errorf("KV write was not refused: %d %s %v", code, body, err)
	}
	reg := `{"Name": "intruder", "Port": 9999}`
	if code, body, err := prom.Do("PUT", "/v1/agent/service/register", reg); err != nil || code != 403 {
		return fmt.Errorf("service register was not refused: %d %s %v", code, body, err)
	}
	return nil
}

// tlsOnly stays raw: it checks each server's TLS handshake, anonymously.
func (c *cl) tlsOnly() error {
	for _, h := range c.servers {
		if conn, err := net.DialTimeout("tcp", h.IP+":8500", 2*time.Second); err == nil {
			conn.Close()
			return fmt.Errorf("%s: plain HTTP port 8500 is open", h.Name)
		}
		api, _ := cluster.NewAPI("https://"+h.IP+":8501", c.secrets.CA, "server."+datacenter+".consul", "", "", "X-Consul-Token", "")
		if code, _, err := api.Do("GET", "/v1/status/leader", ""); err != nil || code != 200 {
			return fmt.Errorf("%s: HTTPS with the cluster's CA: %d %v", h.Name, code, err)
		}
		noCert, _ := cluster.NewAPI("https://"+h.IP+":4646", c.secrets.CA, "server.global.nomad", "", "", "X-Nomad-Token", "")
		if _, _, err := noCert.Do("GET", "/v1/status/leader", ""); err == nil {
			return fmt.Errorf("%s: Nomad answered a client without a certificate", h.Name)
		}
	}
	return nil
}

func (c *cl) nomadACL() error {
	// Raw: the 403 is the check.
	anon := c.nomad.WithToken("")
	if code, body, err := anon.Do("GET", "/v1/jobs", ""); err != nil || code != 403 {
		return fmt.Errorf("anonymous job list: %d %s %v", code, body, err)
	}
	if _, _, err := c.nomadClient.Jobs().List(nil); err != nil {
		return fmt.Errorf("job list with the bootstrap token: %v", err)
	}
	return nil
}

// consulUI stays raw: the UI is a page, not an API the client knows.
func (c *cl) consulUI() error {
	for _, h := range c.servers {
		api, _ := cluster.NewAPI("https://"+h.IP+":8501", c.secrets.CA, "server."+datacenter+".consul", "", "", "X-Consul-Token", "")
		code, body, err := api.Do("GET", "/ui/", "")
		if err != nil || code != 200 || !strings.Contains(string(body), "consul") {
			return fmt.Errorf("%s: GET /ui/: %d %v", h.Name, code, err)
		}
	}
	return nil
}

// gossipEncrypted starts a real Consul agent beside the cluster with no
// gossip key and asks it to join: the servers refuse its messages.
func (c *cl) gossipEncrypted() error {
	dir := c.t.TempDir()
	cmd := exec.Command(binary("CONSUL_BIN"), "agent", "-data-dir", dir, "-node", "intruder", "-bind", testAddr,
		"-client", "127.0.0.1", "-http-port", "18500", "-dns-port", "-1", "-grpc-port", "-1", "-server-port", "18300",
		"-serf-lan-port", "18301", "-serf-wan-port", "-1", "-hcl", "disable_update_check = true", "-retry-join", c.servers[0].IP+":8301")
	log, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The attempt reaches a server and is refused: the servers' gossip is
	// encrypted and the intruder has no key.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		if strings.Contains(string(b), "Remote state is encrypted and encryption is not configured") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the intruder was not told the cluster's gossip is encrypted; its log:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	members, err := c.consulClient.Agent().Members(false)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Name == "intruder" {
			return fmt.Errorf("an agent without the gossip key joined")
		}
	}
	return nil
}

func (c *cl) consulDNS() error {
	h := c.clients[0]
	out, err := c.sh(h, "resolvectl query --legend=no consul.service.consul")
	if err != nil {
		return err
	}
	for _, s := range c.servers {
		if strings.Contains(out, s.IP) {
			return nil
		}
	}
	return fmt.Errorf("%s: resolvectl answered no server address:\n%s", h.Name, out)
}

// mainPIDs are the main PIDs of consul and nomad on h.
func (c *cl) mainPIDs(h *cluster.Host) (string, error) {
	out, err := c.sh(h, "systemctl show -p MainPID --value consul.service nomad.service")
	return strings.Join(strings.Fields(out), " "), err
}

// rotation renews client-1's certificates, copies every secret again and
// touches the marker: its agents restart and serve the new certificates;
// the same delivery once more restarts nothing, and no other host moves.
func (c *cl) rotation() error {
	h, other := c.clients[0], c.clients[1]
	before, err := c.mainPIDs(h)
	if err != nil {
		return err
	}
	otherBefore, _ := c.mainPIDs(other)
	rotated, err := c.secrets.Renew(fmt.Sprintf("consul-client-%d", h.Index), fmt.Sprintf("nomad-client-%d", h.Index))
	if err != nil {
		return err
	}
	c.deliverSecrets(h, rotated)
	var after string
	deadline := time.Now().Add(90 * time.Second)
	for {
		after, _ = c.mainPIDs(h)
		f := strings.Fields(after)
		b := strings.Fields(before)
		if len(f) == 2 && f[0] != b[0] && f[1] != b[1] && f[0] != "0" && f[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: consul and nomad main PIDs %q before, %q after the rotation", h.Name, before, after)
		}
		time.Sleep(time.Second)
	}
	cert, err := c.sh(h, "cat /etc/loopstock/secrets/consul.pem")
	if err != nil || cert != rotated.Certs[fmt.Sprintf("consul-client-%d", h.Index)].Cert {
		return fmt.Errorf("%s: the new certificate is not in place", h.Name)
	}
	// Nomad on the client serves its new certificate once it is back.
	c.waitFor(h.Name+"'s Nomad serving the rotated certificate", time.Minute, func() error {
		served, err := c.sh(h, "timeout 5 openssl s_client -connect 127.0.0.1:4646 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null || true")
		if err != nil {
			return err
		}
		if want := fingerprint(rotated.Certs[fmt.Sprintf("nomad-client-%d", h.Index)].Cert); !strings.Contains(strings.ToUpper(served), want) {
			return fmt.Errorf("serves %q, want %s", strings.TrimSpace(served), want)
		}
		return nil
	})
	c.waitFor(h.Name+" ready again after the rotation", 2*time.Minute, c.nomadClients)
	c.deliverSecrets(h, rotated)
	if err := c.secretsRunDone(h); err != nil {
		return err
	}
	if again, _ := c.mainPIDs(h); again != after {
		return fmt.Errorf("%s: the same secrets again restarted the agents (%q, then %q)", h.Name, after, again)
	}
	if otherAfter, _ := c.mainPIDs(other); otherAfter != otherBefore {
		return fmt.Errorf("%s restarted though its secrets did not change", other.Name)
	}
	c.secrets = rotated
	return nil
}

// secretsRunDone waits until loopstock-secrets.service has run since the
// last delivery and gone back to inactive.
func (c *cl) secretsRunDone(h *cluster.Host) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := c.sh(h, "journalctl --no-pager -u loopstock-secrets -o cat | grep -c 'secrets unchanged' || true; systemctl show -p ActiveState --value loopstock-secrets.service")
		f := strings.Fields(out)
		if len(f) == 2 && f[0] != "0" && f[1] == "inactive" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: loopstock-secrets did not run for the repeated delivery: %q", h.Name, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// fingerprint is a PEM certificate's SHA-256 as openssl prints it.
func fingerprint(certPEM string) string {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return "no certificate"
	}
	sum := sha256.Sum256(block.Bytes)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

var holderRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// holder is the node that holds the reboot slot, "" when free.
func (c *cl) holder() (string, error) {
	pair, _, err := c.consulClient.KV().Get("loopstock/reboot/holder", nil)
	if err != nil {
		return "", err
	}
	if pair == nil {
		return "", nil
	}
	if !holderRE.Match(pair.Value) {
		return "", fmt.Errorf("reboot slot: %q", pair.Value)
	}
	return string(pair.Value), nil
}

// rebootCycle: a node that holds the slot and dies does not block the
// fleet for longer than twice the slot's TTL; then another node takes the
// slot, drains, reboots, comes back eligible and frees the slot.
func (c *cl) rebootCycle() error {
	dead, next := c.clients[0], c.clients[1]
	const ttl = 10 * time.Second
	// The dead holder's TTL is shortened through its reboot.conf, so the
	// test waits seconds, not minutes. Its Nomad is stopped: the drain
	// cannot start, and the script keeps the slot while it retries, until
	// the host dies.
	if _, err := c.sh(dead, fmt.Sprintf("sed -i 's/^SLOT_TTL=.*/SLOT_TTL=%s/' /etc/loopstock/reboot.conf && touch /run/reboot-required && systemctl stop nomad", ttl)); err != nil {
		return err
	}
	if _, err := c.sh(next, "touch /run/reboot-required"); err != nil {
		return err
	}
	if _, err := c.sh(dead, "systemctl start --no-block loopstock-reboot.service"); err != nil {
		return err
	}
	c.waitFor(dead.Name+" holding the reboot slot", time.Minute, func() error {
		if h, err := c.holder(); err != nil || h != dead.Name {
			return fmt.Errorf("holder %q %v", h, err)
		}
		return nil
	})
	if err := dead.Kill(); err != nil {
		return err
	}
	killed := time.Now()
	c.st.logf("%s killed holding the slot; %s asks for it until it gets it", dead.Name, next.Name)
	last, triggers := dead.Name, 0
	c.waitFor(next.Name+" taking the slot", 2*ttl+30*time.Second, func() error {
		h, err := c.holder()
		if h != last {
			c.st.logf("reboot slot holder: %q", h)
			last = h
		}
		if err != nil || h != next.Name {
			// What the timer does every 5 minutes, every 2 seconds.
			if time.Since(killed) > 2*time.Second*time.Duration(triggers) {
				triggers++
				c.sh(next, "systemctl start --no-block loopstock-reboot.service")
			}
			return fmt.Errorf("holder %q %v", h, err)
		}
		return nil
	})
	freed := time.Since(killed)
	c.st.logf("the dead holder's slot was free again after %.1fs (TTL %s)", freed.Seconds(), ttl)
	// Consul frees it within twice the TTL; the next node asks every 2 s.
	if freed > 2*ttl+5*time.Second {
		return fmt.Errorf("the dead holder's slot was free only after %s (TTL %s)", freed, ttl)
	}
	select {
	case <-next.Exited():
	case <-time.After(3 * time.Minute):
		return fmt.Errorf("%s took the slot but did not reboot", next.Name)
	}
	if !next.Rebooted() {
		return fmt.Errorf("%s stopped without a reboot request", next.Name)
	}
	nodes, err := c.nodes()
	if err != nil {
		return err
	}
	if n := nodes[next.Name]; n == nil || n.SchedulingEligibility != "ineligible" {
		return fmt.Errorf("%s rebooted without being drained: %s", next.Name, nodeState(n))
	}
	// Down for its reboot, it still holds the slot: nobody else may go.
	if h, err := c.holder(); err != nil || h != next.Name {
		return fmt.Errorf("while %s reboots the slot is held by %q (%v): another node could reboot too", next.Name, h, err)
	}
	c.st.logf("%s drained and rebooted, still holding the slot; booting it again", next.Name)
	for _, h := range []*cluster.Host{next, dead} {
		if err := h.Boot(bridge); err != nil {
			return err
		}
	}
	c.waitBooted(next)
	c.waitBooted(dead)
	c.waitFor("the slot freed by "+next.Name, 3*time.Minute, func() error {
		if h, err := c.holder(); err != nil || h != "" {
			return fmt.Errorf("holder %q %v", h, err)
		}
		return nil
	})
	c.waitFor("2 ready, eligible Nomad clients", 3*time.Minute, c.nomadClients)
	c.waitFor("3 Consul servers again", 3*time.Minute, c.consulPeers)
	c.waitFor("3 Nomad servers again", 3*time.Minute, c.nomadServers)
	// A plain restart of Nomad on a client does not drain it.
	if _, err := c.sh(next, "systemctl restart nomad"); err != nil {
		return err
	}
	c.waitFor(next.Name+" ready after a restart of nomad", 2*time.Minute, c.nomadClients)
	if nodes, err = c.nodes(); err != nil {
		return err
	}
	n := nodes[next.Name]
	if n == nil {
		return fmt.Errorf("%s not registered after a restart of nomad", next.Name)
	}
	node, _, err := c.nomadClient.Nodes().Info(n.ID, nil)
	if err != nil {
		return fmt.Errorf("%s after a restart of nomad: %v", next.Name, err)
	}
	if node.Drain {
		return fmt.Errorf("%s drained by a restart of nomad", next.Name)
	}
	return nil
}
