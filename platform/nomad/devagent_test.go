package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// TestNomadRunOnDevAgents runs `make nomad-run`'s script against Consul and
// Nomad dev agents on 127.0.0.1: when it returns, every allocation is
// running and healthy and the addresses it prints answer. Then a Redis
// allocation is replaced and the script run again: unchanged jobs start no
// deployment, so only its own wait keeps it from returning early.
func TestNomadRunOnDevAgents(t *testing.T) {
	nomad := nomadBin(t)
	root, _ := filepath.Abs("..")
	bin := filepath.Join(root, ".bin")
	switch {
	case !exists(filepath.Join(bin, "consul")):
		t.Skip("no .bin/consul: run make tools")
	case !exists("/usr/bin/redis-server"):
		t.Skip("no /usr/bin/redis-server: Redis runs under the exec driver on the dev agent")
	case os.Geteuid() != 0:
		t.Skip("not root: the exec driver (Redis on the dev agent) needs root")
	case listening("127.0.0.1:8500") || listening("127.0.0.1:4646"):
		t.Skip("Consul (:8500) or Nomad (:4646) already listens on 127.0.0.1: stop make run or make nomad-stop first")
	}
	if out, err := exec.Command("make", "-C", root, "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	nomadDir := t.TempDir()
	if err := os.Symlink(nomad, filepath.Join(nomadDir, "nomad")); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + nomadDir + ":" + bin + ":" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	run := func(script string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// The scripts run with an empty hostname (a new UTS namespace): a
		// machine's name must not decide whether the dev agents come up.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, self, filepath.Join(root, "scripts", script))
		cmd.Env = append(env, emptyHostnameExec+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { run("nomad-stop") })

	out := run("nomad-run")
	allRunningAndHealthy(t, "after the first run", nil)
	addrs := map[string]string{}
	for _, name := range []string{"nsqadmin", "API"} {
		m := regexp.MustCompile(`(?m)^\s*` + name + `\s+http://(127\.0\.0\.1:\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("nomad-run printed no address for %s:\n%s", name, out)
			continue
		}
		addrs[name] = m[1]
	}
	if a, ok := addrs["nsqadmin"]; ok {
		if code := get(t, "http://"+a+"/ping"); code != 200 {
			t.Errorf("nsqadmin at the printed address %s: HTTP %d", a, code)
		}
	}
	// A window is stored within a few seconds of the generators starting.
	deadline := time.Now().Add(30 * time.Second)
	for code := 0; addrs["API"] != "" && code != 200; code = get(t, "http://"+addrs["API"]+"/v1/integers/last") {
		if time.Now().After(deadline) {
			t.Fatalf("the API at the printed address %s: no window within 30 s (HTTP %d)", addrs["API"], code)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Redis keeps out a client without its password (make nomad-run's Nomad
	// variable), which integer-api has: the window above went through it.
	var redis []struct {
		Service struct {
			Address string
			Port    int
		}
	}
	if _, err := testenv.GetJSON("http://127.0.0.1:8500/v1/health/service/redis?passing=1", &redis); err != nil || len(redis) != 1 {
		t.Fatalf("redis in Consul: %v %+v", err, redis)
	}
	if err := testenv.RedisRefusesAnonymous(fmt.Sprintf("%s:%d", redis[0].Service.Address, redis[0].Service.Port)); err != nil {
		t.Error(err)
	}

	var stopped string
	for _, a := range allocations(t) {
		if a.JobID == "redis" && a.DesiredStatus == "run" {
			stopped = a.ID
		}
	}
	if err := exec.Command(nomad, "alloc", "stop", "-detach", stopped).Run(); err != nil {
		t.Fatalf("nomad alloc stop %s: %v", stopped, err)
	}
	// Wait until Nomad has taken the stop in: the allocation no longer wanted.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		wanted := false
		for _, a := range allocations(t) {
			wanted = wanted || (a.ID == stopped && a.DesiredStatus == "run")
		}
		if !wanted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis allocation %s still wanted 30 s after nomad alloc stop", stopped)
		}
	}
	run("nomad-run")
	allRunningAndHealthy(t, "after a Redis allocation was replaced and nomad-run ran again", map[string]string{"redis": stopped})
}

type alloc struct {
	ID, JobID, TaskGroup, DesiredStatus, ClientStatus string
	DeploymentStatus                                  *struct{ Healthy *bool }
}

func allocations(t *testing.T) []alloc {
	resp, err := http.Get("http://127.0.0.1:4646/v1/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []alloc
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// allRunningAndHealthy: every job nomad-run deploys has an allocation, and
// every allocation meant to run is running and, where Nomad tracks it in a
// deployment, healthy. replaced names allocations that must not count.
func allRunningAndHealthy(t *testing.T, when string, replaced map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, a := range allocations(t) {
		if a.DesiredStatus != "run" {
			continue
		}
		if replaced[a.JobID] == a.ID {
			t.Errorf("%s: %s's stopped allocation %s still wanted", when, a.JobID, a.ID)
		}
		seen[a.JobID] = true
		healthy := a.DeploymentStatus == nil || (a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy)
		if a.ClientStatus != "running" || !healthy {
			h := "unknown"
			if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil {
				h = fmt.Sprint(*a.DeploymentStatus.Healthy)
			}
			t.Errorf("%s: nomad-run returned while %s/%s allocation %s was %s (healthy: %s)",
				when, a.JobID, a.TaskGroup, a.ID[:8], a.ClientStatus, h)
		}
	}
	for _, job := range []string{"redis", "nsq", "nsqd", "integer-api", "integeraverage-cal", "integer-gen"} {
		if !seen[job] {
			t.Errorf("%s: job %s has no allocation to run", when, job)
		}
	}
}

func get(t *testing.T, url string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}
