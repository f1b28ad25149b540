// Package local runs the local stack as make run does (scripts/run-local
// under hivemind) and checks it from outside: Prometheus (.bin/prometheus)
// scrapes the three services it found through its Consul discovery, labelled
// as the cluster's Prometheus labels them, and loads the cluster's alert
// rules; make stop leaves nothing behind.
package local

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// The stack's fixed ports (deploy/local/Procfile, scripts/consul-local).
var stackPorts = []int{8500, 8300, 8301, 8302, 4150, 4151, 4160, 4161, 4171, 6379, 8080, 8081, 8082, 8083, 9090}

// The Consul node of the local stack (scripts/consul-local).
const node = "loopstock-local"

// wantTargets is what Prometheus must scrape, as upTargets reports it: job
// (the Consul service) → "instance at address on node", where the instance
// is the Consul service ID, by default the service, the host name and the
// port (internal/svc).
func wantTargets(t *testing.T) map[string][]string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	target := func(job string, port int) string {
		return fmt.Sprintf("%s-%s-%d at 127.0.0.1:%d on %s", job, host, port, port, node)
	}
	return map[string][]string{
		"integer-api":        {target("integer-api", 8080)},
		"integer-gen":        {target("integer-gen", 8081), target("integer-gen", 8082)},
		"integeraverage-cal": {target("integeraverage-cal", 8083)},
	}
}

func TestMakeRunStartsPrometheusOnTheServices(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole local stack")
	}
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]string{}
	for _, name := range []string{"consul", "nsqd", "nsqlookupd", "nsqadmin", "hivemind", "prometheus"} {
		p := tool(repo, name)
		if p == "" {
			t.Skipf("make run test skipped: %s is not in $LOOPSTOCK_TOOLS or .bin/ (make tools)", name)
		}
		tools[name] = p
	}
	for _, name := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("make run test skipped: %s is not on PATH (make tools installs it)", name)
		}
	}
	if busy := listening(stackPorts); len(busy) > 0 {
		t.Skipf("make run test skipped: ports in use on 127.0.0.1: %v", busy)
	}

	// A copy of the stack's files, so its .data/ is the test's own, with
	// the cluster's rule file where deploy/local/prometheus.yml loads it.
	root := t.TempDir()
	for _, dir := range []string{"scripts", "deploy/local"} {
		copyTree(t, filepath.Join(repo, dir), filepath.Join(root, dir))
	}
	copyFile(t, filepath.Join(repo, "nomad/monitoring/rules.yml"), filepath.Join(root, "nomad/monitoring/rules.yml"))
	bin := filepath.Join(root, ".bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, p := range tools {
		if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The services from the current source, as make run builds them.
	build := exec.Command("go", "build", "-trimpath", "-o", bin+"/",
		"./cmd/integer-gen", "./cmd/integeraverage-cal", "./cmd/integer-api")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	run := exec.Command(filepath.Join(root, "scripts/run-local"))
	run.Dir = root
	run.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH")) // as the Makefile exports it
	out := &testenv.SyncBuffer{}
	run.Stdout, run.Stderr = out, out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { run.Wait(); close(exited) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stopStack(t, root, exited)
		}
		killLeftovers(t, root)
		if t.Failed() {
			t.Logf("---- output of scripts/run-local ----\n%s", out.String())
		}
	})
	alive := func() {
		select {
		case <-exited:
			// Another stack took a port between the check above and run-local's own.
			if line, _, _ := strings.Cut(out.String(), "\n"); strings.HasPrefix(line, "ports already in use") {
				stopped = true
				t.Skipf("make run test skipped: %s", line)
			}
			t.Fatalf("scripts/run-local ended early")
		default:
		}
	}

	testenv.Eventually(t, 30*time.Second, "print-urls to name Prometheus", func() bool {
		alive()
		return strings.Contains(out.String(), "Prometheus     http://127.0.0.1:9090")
	})

	// Consul discovery's first answer may precede the registrations; the
	// next query comes within its refresh interval (30 s).
	want := wantTargets(t)
	var seen string
	if !poll(120*time.Second, func() bool {
		alive()
		got, err := upTargets()
		seen = fmt.Sprint(got, err)
		return err == nil && sameTargets(got, want)
	}) {
		t.Fatalf("Prometheus's targets never became the three services, all up: last seen %s; want %v", seen, want)
	}
	t.Logf("Prometheus scrapes, all up: %v", want)

	// Through the services' own metrics: nsqd's stats read by the averager
	// from the nsqd it found in Consul, and every job's process collector.
	if !poll(60*time.Second, func() bool {
		alive()
		up, err1 := query(`integeraverage_cal_nsqd_up{job="integeraverage-cal",nsqd="127.0.0.1:4151"}`)
		starts, err2 := query(`count by (job) (process_start_time_seconds)`)
		seen = fmt.Sprint(up, starts, err1, err2)
		return err1 == nil && err2 == nil && len(up) == 1 && up[0].value == "1" && len(starts) == len(want)
	}) {
		t.Fatalf("Prometheus never had integeraverage_cal_nsqd_up = 1 for the local nsqd and process_start_time_seconds of every job: last seen %s", seen)
	}

	files, err := ruleFiles()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range files {
		found = found || strings.HasSuffix(f, "nomad/monitoring/rules.yml")
	}
	if !found {
		t.Errorf("Prometheus loaded rules from %v; want the cluster's nomad/monitoring/rules.yml", files)
	}
	t.Logf("%d rule groups loaded from %v", len(files), files)

	stopped = true
	if !stopStack(t, root, exited) {
		t.Fatal("scripts/run-local did not end within 40s of make stop's signals")
	}
	// hivemind has ended; the servers under stop-last end before it does.
	var busy []int
	if !poll(5*time.Second, func() bool { busy = listening(stackPorts); return len(busy) == 0 }) {
		t.Errorf("still listening after the stop: %v", busy)
	}
	if left := leftovers(root); len(left) > 0 {
		t.Errorf("processes of the stack left running: %v", left)
	}
}

// tool is name in $LOOPSTOCK_TOOLS or the repository's .bin/, "" when absent.
func tool(repo, name string) string {
	for _, dir := range []string{os.Getenv("LOOPSTOCK_TOOLS"), filepath.Join(repo, ".bin")} {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() {
			return filepath.Join(dir, name)
		}
	}
	return ""
}

// stopStack stops the stack as make stop does: SIGINT to scripts/run-local
// (.data/run.pid) and to its hivemind. It reports whether run-local ended.
func stopStack(t *testing.T, root string, exited <-chan struct{}) bool {
	data, err := os.ReadFile(filepath.Join(root, ".data/run.pid"))
	if err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			syscall.Kill(pid, syscall.SIGINT)
			for _, child := range children(pid, "hivemind") {
				syscall.Kill(child, syscall.SIGINT)
			}
		}
	} else {
		t.Logf("no .data/run.pid: %v", err)
	}
	select {
	case <-exited:
		return true
	case <-time.After(40 * time.Second):
		return false
	}
}

// children are the pids whose parent is pid and whose command is comm.
func children(pid int, comm string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if lp < 0 || rp < lp {
			continue
		}
		fields := strings.Fields(string(stat[rp+1:]))
		if len(fields) > 1 && string(stat[lp+1:rp]) == comm && fields[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// leftovers are the processes running in root (the stack's working
// directory), as "pid command".
func leftovers(root string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != root && !strings.HasPrefix(cwd, root+"/")) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, e.Name()+" "+strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return out
}

// killLeftovers kills, by pid, what a failed run left in root.
func killLeftovers(t *testing.T, root string) {
	for _, l := range leftovers(root) {
		pid, _ := strconv.Atoi(strings.Fields(l)[0])
		t.Logf("killing leftover %s", l)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// listening are the ports something accepts connections on.
func listening(ports []int) []int {
	var busy []int
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", testenv.Addr(p), 200*time.Millisecond); err == nil {
			c.Close()
			busy = append(busy, p)
		}
	}
	return busy
}

// poll runs cond every 250 ms until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
	return true
}

const prometheus = "http://127.0.0.1:9090"

// upTargets are Prometheus's active targets: job → "instance at address on
// node" (the scrape URL's host:port), with its health and last error when it
// is not up.
func upTargets() (map[string][]string, error) {
	var r struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				ScrapeURL string            `json:"scrapeUrl"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if code, err := testenv.GetJSON(prometheus+"/api/v1/targets?state=active", &r); err != nil || code != 200 {
		return nil, fmt.Errorf("/api/v1/targets: %d %v", code, err)
	}
	got := map[string][]string{}
	for _, tg := range r.Data.ActiveTargets {
		addr := tg.ScrapeURL
		if u, err := url.Parse(tg.ScrapeURL); err == nil {
			addr = u.Host
		}
		s := fmt.Sprintf("%s at %s on %s", tg.Labels["instance"], addr, tg.Labels["node"])
		if tg.Health != "up" {
			s += fmt.Sprintf(" (%s: %s)", tg.Health, tg.LastError)
		}
		got[tg.Labels["job"]] = append(got[tg.Labels["job"]], s)
	}
	for _, l := range got {
		sort.Strings(l)
	}
	return got, nil
}

func sameTargets(got, want map[string][]string) bool {
	if len(got) != len(want) {
		return false
	}
	for job, w := range want {
		if strings.Join(got[job], ",") != strings.Join(w, ",") {
			return false
		}
	}
	return true
}

type sample struct {
	labels map[string]string
	value  string
}

// query runs an instant PromQL query.
func query(q string) ([]sample, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if code, err := testenv.GetJSON(prometheus+"/api/v1/query?query="+url.QueryEscape(q), &r); err != nil || code != 200 {
		return nil, fmt.Errorf("query %s: %d %v", q, code, err)
	}
	var out []sample
	for _, s := range r.Data.Result {
		v, _ := s.Value[1].(string)
		out = append(out, sample{labels: s.Metric, value: v})
	}
	return out, nil
}

// ruleFiles are the files of the rule groups Prometheus loaded.
func ruleFiles() ([]string, error) {
	var r struct {
		Data struct {
			Groups []struct {
				File string `json:"file"`
			} `json:"groups"`
		} `json:"data"`
	}
	if code, err := testenv.GetJSON(prometheus+"/api/v1/rules", &r); err != nil || code != 200 {
		return nil, fmt.Errorf("/api/v1/rules: %d %v", code, err)
	}
	var out []string
	for _, g := range r.Data.Groups {
		out = append(out, g.File)
	}
	return out, nil
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		copyFile(t, p, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, data, fi.Mode().Perm())
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}
