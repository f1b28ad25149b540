package nomad

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/platform/deploy"
)

// TestNomadRunOnDevAgents runs make nomad-run's command against Consul and
// Nomad dev agents it starts on 127.0.0.1: when it returns, the readiness
// check it shares with the cluster test finds nothing pending, and the
// addresses it prints answer. Then a Redis allocation is replaced and the
// command run again: unchanged jobs start no deployment, so only its own
// wait keeps it from returning early. make nomad-stop leaves no process of
// the stack behind.
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
	if out, err := exec.Command("make", "-C", root, "build", filepath.Join(bin, "nomad-run")).CombinedOutput(); err != nil {
		t.Fatalf("make build .bin/nomad-run: %v\n%s", err, out)
	}
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "NOMAD_BIN=" + nomad}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// The command runs with an empty hostname (a new UTS namespace): a
		// machine's name must not decide whether the dev agents come up.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, self, append([]string{filepath.Join(bin, "nomad-run"), "--repo", root}, args...)...)
		cmd.Env = append(env, emptyHostnameExec+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUTS}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nomad-run %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			run("stop")
		}
	})

	out := run()
	consul, client, err := deploy.DevClients()
	if err != nil {
		t.Fatal(err)
	}
	ready := func(when string) {
		t.Helper()
		pending, err := deploy.NotReady(context.Background(), client, consul, deploy.DevJobs(), deploy.DevServices())
		if err != nil || len(pending) > 0 {
			t.Fatalf("%s: nomad-run returned, and the readiness check says (%v):\n  %s", when, err, strings.Join(pending, "\n  "))
		}
	}
	ready("after the first run")
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
	redis, err := deploy.Addresses(context.Background(), consul, "redis")
	if err != nil || len(redis) != 1 {
		t.Fatalf("redis in Consul: %v %v", err, redis)
	}
	if err := testenv.RedisRefusesAnonymous(redis[0]); err != nil {
		t.Error(err)
	}

	allocs, _, err := client.Jobs().Allocations("redis", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var replaced string
	for _, a := range allocs {
		if a.DesiredStatus == "run" {
			replaced = a.ID
		}
	}
	if _, err := client.Allocations().Stop(&api.Allocation{ID: replaced}, nil); err != nil {
		t.Fatalf("stopping redis allocation %s: %v", replaced, err)
	}
	// Wait until Nomad has taken the stop in: the allocation no longer wanted.
	testenv.Eventually(t, 30*time.Second, "the stopped redis allocation no longer wanted", func() bool {
		a, _, err := client.Allocations().Info(replaced, nil)
		return err == nil && a.DesiredStatus != "run"
	})
	run()
	ready("after a Redis allocation was replaced and nomad-run ran again")
	if a, _, err := client.Allocations().Info(replaced, nil); err != nil || a.DesiredStatus == "run" {
		t.Errorf("the stopped redis allocation %s is wanted again (%v)", replaced, err)
	}

	// make nomad-stop: the jobs, the agents and every task process gone.
	out = run("stop")
	stopped = true
	if !strings.Contains(out, "stopped redis") || !strings.Contains(out, "stopped the nomad dev agent") {
		t.Errorf("nomad-run stop did not say it stopped the jobs and the agents:\n%s", out)
	}
	if left := deploy.Leftovers(filepath.Join(root, ".data", "nomad-dev")); len(left) > 0 {
		t.Errorf("processes of the stack still run after nomad-run stop: %+v", left)
	}
	for _, p := range stackProcesses(bin) {
		t.Errorf("a process of the stack still runs after nomad-run stop: %s", p)
	}
	if listening("127.0.0.1:8500") || listening("127.0.0.1:4646") {
		t.Error("Consul or Nomad still listens after nomad-run stop")
	}
}

// stackProcesses are the running processes whose program is one of the
// stack's: the services and tools in .bin, or a redis-server.
func stackProcesses(bin string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		argv0 := strings.SplitN(string(cmdline), "\x00", 2)[0]
		if strings.HasPrefix(argv0, bin+"/") || filepath.Base(argv0) == "redis-server" {
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && !strings.Contains(string(stat), ") Z ") {
				out = append(out, e.Name()+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
	}
	return out
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
