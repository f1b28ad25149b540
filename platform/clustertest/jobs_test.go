package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/loopstock/loopstock/platform/deploy"
)

// repoDir is the checkout, from platform/clustertest.
const repoDir = "../.."

// jobsResult is what the jobs part reports on the summary line.
type jobsResult struct {
	jobs, jobsRunning, services, passing int
	api                                  bool
}

// deployJobs deploys every job in nomad/ the way nomad/README.md says for a
// cluster: make dist (and the NSQ release tarball), the tarballs served
// where the clients fetch them, NOMAD_VAR_* for their URLs and checksums,
// then make nomad-run with the operator's addresses, TLS files and tokens.
func (c *cl) deployJobs(serve func(urlPath, file string) string) (*jobsResult, error) {
	for _, target := range []string{"dist", "nsq-release", "monitoring-release"} {
		c.st.logf("make %s", target)
		// The hosts are amd64: the arm64 tarball is not needed here.
		if out, err := c.make([]string{"DIST_ARCHS=amd64"}, target); err != nil {
			return nil, fmt.Errorf("make %s: %v\n%s", target, err, tailString(out, 20))
		}
	}
	sums, err := os.ReadFile(filepath.Join(repoDir, "dist", "SHA256SUMS"))
	if err != nil {
		return nil, err
	}
	vars := []string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		url := serve("/dist/"+f[1], filepath.Join(repoDir, "dist", f[1]))
		switch {
		case strings.HasPrefix(f[1], "loopstock_") && strings.HasSuffix(f[1], "_linux_amd64.tar.gz"):
			vars = append(vars, "NOMAD_VAR_release_url="+url, "NOMAD_VAR_release_sha256="+f[0])
			c.release.url, c.release.sha256 = url, f[0]
		case strings.HasPrefix(f[1], "nsq-"):
			vars = append(vars, "NOMAD_VAR_nsq_url="+url, "NOMAD_VAR_nsq_sha256="+f[0])
		case strings.HasPrefix(f[1], "prometheus-"):
			vars = append(vars, "NOMAD_VAR_prometheus_url="+url, "NOMAD_VAR_prometheus_sha256="+f[0])
		case strings.HasPrefix(f[1], "alertmanager-"):
			vars = append(vars, "NOMAD_VAR_alertmanager_url="+url, "NOMAD_VAR_alertmanager_sha256="+f[0])
		}
	}
	if len(vars) != 8 {
		return nil, fmt.Errorf("dist/SHA256SUMS lacks the amd64 release, the NSQ, Prometheus or Alertmanager tarball:\n%s", sums)
	}
	files := c.t.TempDir()
	for name, content := range map[string]string{"ca.pem": c.secrets.CA, "cli.pem": c.secrets.Certs["cli"].Cert, "cli-key.pem": c.secrets.Certs["cli"].Key} {
		if err := os.WriteFile(filepath.Join(files, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	server := c.servers[0].IP
	env := append(vars,
		// What terraform output's operator_env and tokens give.
		"NOMAD_ADDR=https://"+server+":4646", "NOMAD_TLS_SERVER_NAME=server.global.nomad",
		"NOMAD_CACERT="+filepath.Join(files, "ca.pem"), "NOMAD_CLIENT_CERT="+filepath.Join(files, "cli.pem"),
		"NOMAD_CLIENT_KEY="+filepath.Join(files, "cli-key.pem"), "NOMAD_TOKEN="+c.secrets.Tokens["nomad-bootstrap"].Secret,
		"CONSUL_HTTP_ADDR=https://"+server+":8501", "CONSUL_TLS_SERVER_NAME=server."+datacenter+".consul",
		"CONSUL_CACERT="+filepath.Join(files, "ca.pem"), "CONSUL_HTTP_TOKEN="+c.secrets.Tokens["consul-bootstrap"].Secret,
		// The services' Consul token and CA, and Prometheus's own token
		// (nomad/README.md).
		"CONSUL_TOKEN="+c.secrets.Tokens["loopstock"].Secret, "CONSUL_CA="+filepath.Join(files, "ca.pem"),
		"PROMETHEUS_CONSUL_TOKEN="+c.secrets.Tokens["prometheus"].Secret,
		// Alerts reach Alertmanager; no receiver here: the test reads them there.
		// No Grafana tarball here: Grafana is optional.
		// The only override: Redis runs under Docker on the cluster, and
		// Docker cannot run inside these container hosts.
		"NOMAD_RUN_VARS=redis_driver=exec"+copiesOverride(),
	)
	fmt.Println("cluster test: Redis and its Sentinels run with the exec driver instead of Docker (no Docker engine runs inside a container host); every other task runs with the cluster's exec driver; the monitoring job without Grafana (optional; no tarball here)")
	c.st.logf("make nomad-run against %s", server)
	out, err := c.make(env, "nomad-run")
	if err != nil {
		c.st.logf("make nomad-run said:\n%s", tailString(out, 150))
		return nil, fmt.Errorf("make nomad-run: %v", err)
	}
	c.st.logf("make nomad-run said:\n%s", tailString(out, 12))
	res := &jobsResult{}
	// make nomad-run returned once this held; it is checked again from here.
	c.waitFor("the stack ready (deploy.NotReady: allocations running and healthy, services passing)", 3*time.Minute, func() error {
		pending, err := deploy.NotReady(c.ctx, c.nomadClient, c.consulClient, append(deploy.Jobs, "monitoring"),
			append(deploy.Services, deploy.MonitoringServices...))
		if err == nil && len(pending) > 0 {
			err = fmt.Errorf("%s", strings.Join(pending, "; "))
		}
		return err
	})
	c.waitFor("every allocation running", 3*time.Minute, func() error { return c.allocationsRunning(res) })
	c.waitFor("every service passing in Consul", 3*time.Minute, func() error { return c.servicesPassing(res) })
	healthy := time.Now()
	c.waitFor("a window with count 100 from integer-api, found through Consul", 45*time.Second, func() error {
		w, err := c.lastWindow()
		if err != nil {
			return err
		}
		if w.Count != 100 {
			return fmt.Errorf("newest window %+v", w)
		}
		return nil
	})
	res.api = time.Since(healthy) <= 30*time.Second+5*time.Second
	// Two Redis, one per client, and three Sentinels, one per server (what
	// each keeps out is the data plane's check, intruders).
	redis, err := c.passingOn("redis")
	if err != nil || len(redis) != 2 {
		return nil, fmt.Errorf("redis in Consul: %v, want one on each client (%v)", redis, err)
	}
	sentinels, err := c.passingOn("redis-sentinel")
	if err != nil || len(sentinels) != 3 {
		return nil, fmt.Errorf("redis-sentinel in Consul: %v, want one on each server (%v)", sentinels, err)
	}
	return res, nil
}

// copiesOverride: LOOPSTOCK_CLUSTER_NSQD_COPIES=1 deploys integer-gen with
// one copy per message, to show what the second copy prevents.
func copiesOverride() string {
	if n := os.Getenv("LOOPSTOCK_CLUSTER_NSQD_COPIES"); n != "" {
		fmt.Println("cluster test: integer-gen publishes " + n + " copies of each message (LOOPSTOCK_CLUSTER_NSQD_COPIES)")
		return " nsqd_copies=" + n
	}
	return ""
}

// make runs a target of the project's Makefile with extra environment.
func (c *cl) make(env []string, target string) (string, error) {
	cmd := exec.CommandContext(c.ctx, "make", "-s", target)
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), env...)
	if nomad := binary("NOMAD_BIN"); nomad != "" {
		cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(nomad)+":"+os.Getenv("PATH"))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// allocationsRunning counts the jobs whose every wanted allocation runs,
// for the summary line: every job Nomad has, not only the stack's.
func (c *cl) allocationsRunning(res *jobsResult) error {
	jobs, _, err := c.nomadClient.Jobs().List(nil)
	if err != nil {
		return err
	}
	res.jobs, res.jobsRunning = 0, 0
	var problems []string
	for _, j := range jobs {
		allocs, _, err := c.nomadClient.Jobs().Allocations(j.ID, false, nil)
		if err != nil {
			return err
		}
		res.jobs++
		running := true
		for _, a := range allocs {
			if a.DesiredStatus == "run" && a.ClientStatus != "running" {
				running = false
				problems = append(problems, fmt.Sprintf("%s/%s %s", j.ID, a.TaskGroup, a.ClientStatus))
			}
		}
		if running && len(allocs) > 0 {
			res.jobsRunning++
		}
	}
	if res.jobs == 0 || res.jobsRunning != res.jobs {
		return fmt.Errorf("%d/%d jobs running: %s", res.jobsRunning, res.jobs, strings.Join(problems, ", "))
	}
	return nil
}

// servicesPassing counts the service instances in Consul passing every
// check, for the summary line: every service registered, not only those
// the readiness check names.
func (c *cl) servicesPassing(res *jobsResult) error {
	services, _, err := c.consulClient.Catalog().Services(nil)
	if err != nil {
		return err
	}
	res.services, res.passing = 0, 0
	var failing []string
	var names []string
	for name := range services {
		if name == "consul" || strings.HasPrefix(name, "nomad") {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		entries, _, err := c.consulClient.Health().Service(name, "", false, nil)
		if err != nil {
			return err
		}
		for _, e := range entries {
			res.services++
			ok := true
			for _, ch := range e.Checks {
				if ch.Status != "passing" {
					ok = false
					failing = append(failing, fmt.Sprintf("%s (%s %s)", e.Service.ID, ch.CheckID, ch.Status))
				}
			}
			if ok {
				res.passing++
			}
		}
	}
	if res.services == 0 || res.passing != res.services {
		return fmt.Errorf("%d/%d service instances passing: %s", res.passing, res.services, strings.Join(failing, ", "))
	}
	return nil
}

type window struct {
	Start   string  `json:"start"`
	Average float64 `json:"average"`
	Count   int     `json:"count"`
}

// lastWindow asks an integer-api instance that Consul says is passing
// (any one: a client resolving integer-api.service.consul gets any).
func (c *cl) lastWindow() (*window, error) {
	addrs, err := c.passing("integer-api")
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no passing integer-api in Consul")
	}
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addrs[rand.IntN(len(addrs))] + "/v1/integers/last")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/integers/last: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var w window
	return &w, json.Unmarshal(body, &w)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
