package nomad

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/platform/deploy"
)

// The by-hand path of nomad/README.md: its tables and its commands, checked
// against the job files, make nomad-run and real dev agents.

// readmeSection is the text of README.md from the heading "## name" to the
// next heading of that level.
func readmeSection(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+name+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", name)
	}
	s = s[i+len(name)+5:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// readmeCommands are the lines of the first sh block of a README section.
func readmeCommands(t *testing.T, section string) []string {
	t.Helper()
	s := readmeSection(t, section)
	i := strings.Index(s, "```sh\n")
	if i < 0 {
		t.Fatalf("README.md, %q: no sh block", section)
	}
	s = s[i+len("```sh\n"):]
	s = s[:strings.Index(s, "```")]
	return strings.Split(strings.TrimSpace(s), "\n")
}

// tableRows are the cells of a markdown table's body rows in text.
func tableRows(text string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), " | ") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:] // the header
	}
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// varPuts are the items a list of commands writes: Nomad variable path →
// items, from its `nomad var put` lines.
func varPuts(lines []string) map[string][]string {
	out := map[string][]string{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "nomad" || f[1] != "var" || f[2] != "put" {
			continue
		}
		path := ""
		for _, a := range f[3:] {
			switch {
			case strings.HasPrefix(a, "-"):
			case path == "":
				path = a
			default:
				out[path] = append(out[path], strings.SplitN(a, "=", 2)[0])
			}
		}
		sort.Strings(out[path])
	}
	return out
}

// allJobs are the job names, monitoring included.
func allJobs() []string { return append(append([]string{}, deploy.Jobs...), "monitoring") }

// Each job's table in "Variables" lists exactly the variables the job
// declares, with their defaults as written in the job file.
func TestTheReadmeListsEachJobsVariables(t *testing.T) {
	section := readmeSection(t, "Variables")
	for _, f := range jobFiles(t) {
		i := strings.Index(section, "`"+f+"`:\n")
		if i < 0 {
			t.Errorf("README.md, Variables: no table for %s", f)
			continue
		}
		table := section[i:]
		if j := strings.Index(table[3:], "\n`"); j >= 0 {
			table = table[:j+3]
		}
		body, src := hclBody(t, f)
		defaults := map[string]string{}
		for _, b := range body.Blocks {
			if b.Type == "variable" {
				if a, ok := b.Body.Attributes["default"]; ok {
					defaults[b.Labels[0]] = string(a.Expr.Range().SliceBytes(src))
				}
			}
		}
		declared, err := deploy.Declared(f, src)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, row := range tableRows(table) {
			name, def := strings.Trim(row[0], "`"), ""
			if m := codeSpan.FindStringSubmatch(row[len(row)-1]); m != nil {
				def = m[1]
			}
			listed[name] = true
			if _, ok := declared[name]; !ok {
				t.Errorf("README.md lists %s for %s, which does not declare it", name, f)
			} else if def != defaults[name] {
				t.Errorf("README.md: %s's %s defaults to %s, the job file says %s", f, name, def, defaults[name])
			}
		}
		for name := range declared {
			if !listed[name] {
				t.Errorf("README.md does not list %s's variable %s", f, name)
			}
		}
	}
}

// The README's Nomad variables — its table, the cluster's nomad var put
// lines and the dev walk-through's — are what make nomad-run writes and
// the jobs read (TestEachJobReadsExactlyTheNomadVariablesWrittenForIt).
func TestTheReadmesNomadVariablesAreWhatNomadRunWrites(t *testing.T) {
	cluster, dev := map[string][]string{}, map[string][]string{}
	for _, job := range allJobs() {
		for path, items := range wantSecrets(job, true) {
			cluster[path] = items
		}
		if slices.Contains(deploy.ClusterOnly, job) {
			continue
		}
		for path, items := range wantSecrets(job, false) {
			dev[path] = items
		}
	}
	table := map[string][]string{}
	for _, row := range tableRows(readmeSection(t, "Nomad variables")) {
		path := strings.Trim(row[0], "`")
		for _, m := range codeSpan.FindAllStringSubmatch(row[1], -1) {
			table[path] = append(table[path], m[1])
		}
		sort.Strings(table[path])
	}
	for what, got := range map[string]map[string][]string{
		"the table of Nomad variables":            table,
		"the cluster's nomad var put lines":       varPuts(readmeCommands(t, "Nomad variables")),
		"Dev agent by hand's nomad var put lines": varPuts(readmeCommands(t, "Dev agent by hand")),
	} {
		want := cluster
		if strings.HasPrefix(what, "Dev") {
			want = dev
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("README.md, %s: %v; make nomad-run writes %v", what, got, want)
		}
	}
}

// byHandEnv is the environment the README's dev exports make, run by sh
// in the checkout.
func byHandEnv(t *testing.T, root string) []string {
	t.Helper()
	var exports []string
	for _, line := range readmeCommands(t, "Dev agent by hand") {
		if strings.HasPrefix(line, "export ") {
			exports = append(exports, line)
		}
	}
	cmd := exec.Command("sh", "-ec", strings.Join(exports, "\n")+"\nenv")
	cmd.Dir, cmd.Env = root, []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the README's exports: %v", err)
	}
	var env []string
	for _, kv := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(kv, "NOMAD_VAR_") {
			env = append(env, kv)
		}
	}
	sort.Strings(env)
	return env
}

// The dev walk-through's exports give every job what make nomad-run gives
// it on a dev agent (vars/dev.hcl, bin_dir and redis_node).
func TestTheReadmesDevExportsAreTheDevVarFile(t *testing.T) {
	root, _ := filepath.Abs("..")
	env := byHandEnv(t, root)
	dev := targets(t)["dev"]
	dev.overrides["bin_dir"], dev.overrides["redis_node"] = filepath.Join(root, ".bin"), deploy.DevNodeName
	for _, f := range jobFiles(t) {
		viaRun, err := parseJob(t, f, jobVars(t, f, dev))
		if err != nil {
			t.Fatal(err)
		}
		args := []string{f}
		if f == "monitoring.nomad.hcl" {
			args = append(monitoringArgs(t), f)
		}
		byHand, err := nomadOutput(t, env, args...)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.MarshalIndent(byHand, "", " ")
		b, _ := json.MarshalIndent(viaRun, "", " ")
		if string(a) != string(b) {
			t.Errorf("%s: the README's exports (%v) differ from make nomad-run's dev values:\n%s", f, env, firstDifference(string(a), string(b)))
		}
	}
}

// devAgents starts Consul and Nomad dev agents for one test, or skips it
// saying what is missing; at the end every job is purged and the agents
// stopped, leaving no process behind. It returns the checkout.
func devAgents(t *testing.T) (string, *deploy.DevAgents) {
	t.Helper()
	nomad := nomadBin(t)
	root, _ := filepath.Abs("..")
	bin := filepath.Join(root, ".bin")
	var missing []string
	for _, tool := range []string{"consul", "nsqd", "nsqlookupd", "nsqadmin"} {
		if !exists(filepath.Join(bin, tool)) {
			missing = append(missing, ".bin/"+tool)
		}
	}
	switch {
	case testing.Short():
		t.Skip("-short: no dev agents")
	case len(missing) > 0:
		t.Skipf("no %s: run make tools", strings.Join(missing, ", "))
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
	t.Setenv("NOMAD_BIN", nomad)
	data, err := os.MkdirTemp("", "loopstock-byhand-")
	if err != nil {
		t.Fatal(err)
	}
	log := &testLog{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agents, err := deploy.StartDevAgents(ctx, filepath.Join(data, "nomad-dev"), bin, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := deploy.Stop(ctx, deploy.Options{Repo: root, Data: data, Out: log}); err != nil {
			t.Errorf("stopping the jobs and the dev agents: %v", err)
		}
		removeUnlessMounted(t, data)
	})
	if err != nil {
		t.Fatalf("starting the dev agents: %v", err)
	}
	return root, agents
}

// removeUnlessMounted deletes dir, unless something is still mounted under
// it (an allocation's secrets): removing would reach into the mount.
func removeUnlessMounted(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			t.Errorf("%s still mounted after the dev agents stopped: %s is left in place", f[4], dir)
			return
		}
	}
	os.RemoveAll(dir)
}

// testLog writes what the agents and commands say to the test's log.
type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runReadme runs README lines with sh in the checkout, as an operator's
// shell would, with only nomad (the one under test) added to PATH.
func runReadme(t *testing.T, root string, lines []string, timeout time.Duration) (string, error) {
	t.Helper()
	nomadDir := t.TempDir()
	if err := os.Symlink(nomadBin(t), filepath.Join(nomadDir, "nomad")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-exc", strings.Join(lines, "\n"))
	cmd.Dir = root
	cmd.Env = []string{"PATH=" + nomadDir + ":" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitReady polls the stack's readiness check until nothing is pending.
func waitReady(t *testing.T, agents *deploy.DevAgents, jobs, services []string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		pending, err := deploy.NotReady(ctx, agents.Nomad, agents.Consul, jobs, services)
		if err != nil {
			pending = []string{err.Error()}
		} else if len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not running and healthy after %s: %s", within, strings.Join(pending, "; "))
		case <-time.After(time.Second):
		}
	}
}

// The dev walk-through of nomad/README.md, its own lines: plain nomad var
// put and nomad job run on dev agents give a stack that serves windows,
// and integer-gen runs with no Nomad variable at all.
func TestTheReadmeDeploysOnADevAgent(t *testing.T) {
	root, agents := devAgents(t)
	lines := readmeCommands(t, "Dev agent by hand")
	out, err := runReadme(t, root, lines, 8*time.Minute)
	if err != nil {
		t.Fatalf("the README's commands: %v\n%s", err, out)
	}
	waitReady(t, agents, deploy.DevJobs(), deploy.DevServices(), 2*time.Minute)

	v, _, err := agents.Nomad.Variables().Peek("nomad/jobs/integer-gen", nil)
	if err != nil || v != nil {
		t.Errorf("integer-gen's Nomad variable: %+v (%v); the README writes none, and none is needed", v, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addrs, err := deploy.Addresses(ctx, agents.Consul, "integer-api")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("integer-api in Consul: %v %v", addrs, err)
	}
	// A window is stored within seconds of the generators starting.
	for code := get(t, "http://"+addrs[0]+"/v1/integers/last"); code != 200; code = get(t, "http://"+addrs[0]+"/v1/integers/last") {
		select {
		case <-ctx.Done():
			t.Fatalf("GET http://%s/v1/integers/last: no window within 60 s (HTTP %d)", addrs[0], code)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// A version of integer-api that never turns healthy (its Consul address
// wrong: /health says 503, Redis out of reach) is rolled back by Nomad
// itself: the deployment fails and the job runs its last stable version
// again, every instance healthy. It takes a while: the deployment fails
// at its progress deadline (2 min), not at the instance's healthy deadline.
func TestABrokenIntegerAPIIsRevertedByNomad(t *testing.T) {
	root, agents := devAgents(t)
	// The README's exports, secrets and nomad var put, and its nomad job
	// run for Redis and integer-api only: what integer-api needs.
	var lines []string
	for _, line := range readmeCommands(t, "Dev agent by hand") {
		if !strings.HasPrefix(line, "nomad job run") || strings.HasSuffix(line, "/redis.nomad.hcl") || strings.HasSuffix(line, "/integer-api.nomad.hcl") {
			lines = append(lines, line)
		}
	}
	if out, err := runReadme(t, root, lines, 5*time.Minute); err != nil {
		t.Fatalf("the README's commands for Redis and integer-api: %v\n%s", err, out)
	}
	waitReady(t, agents, []string{"redis", "integer-api"}, []string{"redis", "integer-api"}, 2*time.Minute)
	jobs := agents.Nomad.Jobs()
	good, _, err := jobs.Info("integer-api", nil)
	if err != nil {
		t.Fatal(err)
	}
	stable := *good.Version
	goodAddr := good.TaskGroups[0].Tasks[0].Env["CONSUL_HTTP_ADDR"]

	var exports []string
	for _, line := range lines {
		if strings.HasPrefix(line, "export ") {
			exports = append(exports, line)
		}
	}
	start := time.Now()
	out, runErr := runReadme(t, root, append(exports, "nomad job run -var consul_http_addr=127.0.0.1:1 nomad/integer-api.nomad.hcl"), 5*time.Minute)
	t.Logf("the broken roll-out took %s; nomad job run: %v\n%s", time.Since(start).Round(time.Second), runErr, out)

	// The broken version's deployment failed, rolling back to the stable one.
	versions, _, _, err := jobs.Versions("integer-api", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var broken *nomadapi.Job
	for _, v := range versions {
		if *v.Version == stable+1 {
			broken = v
		}
	}
	if broken == nil || broken.TaskGroups[0].Tasks[0].Env["CONSUL_HTTP_ADDR"] != "127.0.0.1:1" {
		t.Fatalf("no version %d with the broken Consul address among %d versions", stable+1, len(versions))
	}
	deployments, _, err := jobs.Deployments("integer-api", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed *nomadapi.Deployment
	for _, d := range deployments {
		if d.JobVersion == stable+1 {
			failed = d
		}
	}
	if failed == nil || failed.Status != nomadapi.DeploymentStatusFailed ||
		!strings.Contains(failed.StatusDescription, fmt.Sprintf("rolling back to job version %d", stable)) {
		t.Fatalf("the broken version's deployment: %+v; want failed, rolling back to job version %d", failed, stable)
	}
	if runErr == nil {
		t.Errorf("nomad job run of a version that never turned healthy exited 0:\n%s", out)
	}

	// Nomad registered the stable version again (as a new version), and
	// its deployment succeeds: every instance runs it, healthy.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		job, _, err := jobs.Info("integer-api", nil)
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := jobs.LatestDeployment("integer-api", nil)
		if err != nil {
			t.Fatal(err)
		}
		reverted := *job.Version > stable+1 && job.TaskGroups[0].Tasks[0].Env["CONSUL_HTTP_ADDR"] == goodAddr
		if reverted && d != nil && d.JobVersion == *job.Version && d.Status == nomadapi.DeploymentStatusSuccessful {
			allocs, _, err := jobs.Allocations("integer-api", false, nil)
			if err != nil {
				t.Fatal(err)
			}
			running := 0
			for _, a := range allocs {
				if a.DesiredStatus != nomadapi.AllocDesiredStatusRun {
					continue
				}
				running++
				if a.JobVersion != *job.Version || a.ClientStatus != nomadapi.AllocClientStatusRunning ||
					a.DeploymentStatus == nil || a.DeploymentStatus.Healthy == nil || !*a.DeploymentStatus.Healthy {
					t.Errorf("after the revert, allocation %s runs version %d, %s, deployment status %+v", a.ID[:8], a.JobVersion, a.ClientStatus, a.DeploymentStatus)
				}
			}
			if running != *job.TaskGroups[0].Count {
				t.Errorf("after the revert, %d allocations to run, want %d", running, *job.TaskGroups[0].Count)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no successful deployment of the reverted job: version %d (stable was %d), Consul address %q, latest deployment %+v",
				*job.Version, stable, job.TaskGroups[0].Tasks[0].Env["CONSUL_HTTP_ADDR"], d)
		case <-time.After(time.Second):
		}
	}
	waitReady(t, agents, []string{"redis", "integer-api"}, []string{"redis", "integer-api"}, time.Minute)
}
