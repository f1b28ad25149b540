package nomad

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"

	"github.com/loopstock/loopstock/platform/jobcheck"
)

// operatorEnv is what an operator exports for a cluster deploy, as
// nomad/README.md documents it: each value differs from every default.
var operatorEnv = map[string]string{
	"release_url":       "https://releases.example.org/loopstock_9.9.9_linux_amd64.tar.gz",
	"release_sha256":    strings.Repeat("a1", 32),
	"nsq_url":           "https://releases.example.org/nsq-1.3.0.linux-amd64.go1.21.5.tar.gz",
	"nsq_sha256":        strings.Repeat("b2", 32),
	"prometheus_url":    "https://releases.example.org/prometheus-2.54.1.linux-amd64.tar.gz",
	"prometheus_sha256": strings.Repeat("c3", 32),
	"grafana_url":       "https://releases.example.org/grafana-11.2.0.linux-amd64.tar.gz",
	"grafana_sha256":    strings.Repeat("d4", 32),
	"redis_node":        "client-2",
	"counts":            `{nsqlookupd = 1, integer_gen = 3, averager = 1, api = 4}`,
}

// attrNames are the names an HCL var file sets.
func attrNames(t *testing.T, file string) map[string]bool {
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, file, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	out := map[string]bool{}
	for name := range f.Body.(*hclsyntax.Body).Attributes {
		out[name] = true
	}
	return out
}

// clusterJob evaluates a job file as `nomad job run -var-file=vars/cluster.hcl`
// does with env as NOMAD_VAR_* variables: Nomad applies the environment
// first and var files after it, so a variable the file sets hides the
// environment's value; variables the job does not declare are ignored.
func clusterJob(t *testing.T, file string, env map[string]string) *api.Job {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	varFile, _ := os.ReadFile("vars/cluster.hcl")
	pf, diags := jobcheck.Parse(file, src, map[string][]byte{"vars/cluster.hcl": varFile})
	if diags.HasErrors() {
		t.Fatalf("%s with vars/cluster.hcl: %s", file, diags.Error())
	}
	inFile := attrNames(t, "vars/cluster.hcl")
	var envHCL strings.Builder
	for name, v := range env {
		declared, ok := pf.Variables[name]
		if !ok || inFile[name] {
			continue
		}
		// A string variable takes NOMAD_VAR_x literally; other types as HCL.
		if declared.Type() == cty.String {
			v = string(hclwrite.TokensForValue(cty.StringVal(v)).Bytes())
		}
		envHCL.WriteString(name + " = " + v + "\n")
	}
	pf, diags = jobcheck.Parse(file, src, map[string][]byte{"vars/cluster.hcl": varFile, "NOMAD_VAR_*": []byte(envHCL.String())})
	if diags.HasErrors() {
		t.Fatalf("%s with vars/cluster.hcl and NOMAD_VAR_*: %s", file, diags.Error())
	}
	return pf.Job
}

func artifacts(job *api.Job) map[string]*api.TaskArtifact {
	out := map[string]*api.TaskArtifact{}
	for _, g := range job.TaskGroups {
		for _, task := range g.Tasks {
			for i, a := range task.Artifacts {
				out[*g.Name+"/"+task.Name+"#"+strconv.Itoa(i)] = a
			}
		}
	}
	return out
}

// Defect: vars/cluster.hcl set release_url, the checksums, nsq_url and
// counts, so the documented NOMAD_VAR_* values never reached the jobs.
func TestTheOperatorsEnvironmentReachesTheClusterJobs(t *testing.T) {
	for _, f := range jobFiles(t) {
		if f == "monitoring.nomad.hcl" {
			continue // TestMonitoringArtifactsAreCheckedOnTheCluster
		}
		job := clusterJob(t, f, operatorEnv)
		for where, a := range artifacts(job) {
			want := map[string]string{operatorEnv["release_url"]: operatorEnv["release_sha256"], operatorEnv["nsq_url"]: operatorEnv["nsq_sha256"]}
			sum, ok := want[*a.GetterSource]
			if !ok {
				t.Errorf("%s %s: artifact %s, not NOMAD_VAR_release_url or NOMAD_VAR_nsq_url", f, where, *a.GetterSource)
			} else if got := a.GetterOptions["checksum"]; got != "sha256:"+sum {
				t.Errorf("%s %s: checksum %q, not the one NOMAD_VAR_*_sha256 gives", f, where, got)
			}
		}
		for _, g := range job.TaskGroups {
			want := map[string]int{"nsqlookupd": 1, "integer-gen": 3, "averager": 1, "api": 4}
			if n, ok := want[*g.Name]; ok && (g.Count == nil || *g.Count != n) {
				t.Errorf("%s group %s: count %d, NOMAD_VAR_counts says %d", f, *g.Name, derefInt(g.Count), n)
			}
		}
	}
	for name := range attrNames(t, "vars/cluster.hcl") {
		if _, ok := operatorEnv[name]; ok {
			t.Errorf("vars/cluster.hcl sets %s: it would hide NOMAD_VAR_%s", name, name)
		}
	}
}

// Defect: the monitoring job's checksums defaulted to "" and nothing set them.
func TestMonitoringArtifactsAreCheckedOnTheCluster(t *testing.T) {
	job := clusterJob(t, "monitoring.nomad.hcl", operatorEnv)
	got := artifacts(job)
	if len(got) != 2 {
		t.Fatalf("monitoring: %d artifacts, want Prometheus and Grafana", len(got))
	}
	for where, a := range got {
		tool := strings.SplitN(where, "/", 2)[0]
		if *a.GetterSource != operatorEnv[tool+"_url"] {
			t.Errorf("monitoring %s: artifact %s, not NOMAD_VAR_%s_url", where, *a.GetterSource, tool)
		}
		if c := a.GetterOptions["checksum"]; c != "sha256:"+operatorEnv[tool+"_sha256"] {
			t.Errorf("monitoring %s: checksum %q, not NOMAD_VAR_%s_sha256", where, c, tool)
		}
	}
}

// defaultClients is the smallest client count any platform starts with.
func defaultClients(t *testing.T) int {
	n := 0
	for _, f := range []string{"../Vagrantfile", "../terraform/examples/aws/main.tf", "../terraform/examples/libvirt/main.tf"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\s*(?:CLIENTS|client_count)\s*=\s*(\d+)`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("%s: no client count", f)
		}
		if c, _ := strconv.Atoi(string(m[1])); n == 0 || c < n {
			n = c
		}
	}
	return n
}

// Defect: 3 nsqlookupd on distinct hosts, and 2 clients everywhere.
func TestTheDefaultCountsPlaceOnTheDefaultCluster(t *testing.T) {
	clients := defaultClients(t)
	env := map[string]string{}
	for k, v := range operatorEnv {
		if k != "counts" {
			env[k] = v
		}
	}
	for _, f := range jobFiles(t) {
		job := clusterJob(t, f, env)
		for _, g := range job.TaskGroups {
			distinct := false
			for _, c := range append(append([]*api.Constraint{}, job.Constraints...), g.Constraints...) {
				distinct = distinct || (c.Operand == "distinct_hosts" && c.RTarget != "false")
			}
			if distinct && g.Count != nil && *g.Count > clients {
				t.Errorf("%s group %s: %d allocations on distinct hosts, the default cluster has %d clients",
					f, *g.Name, *g.Count, clients)
			}
		}
	}
}

// Defect: Redis's data is in one client's host volume, and every client
// has a volume of that name: rescheduled elsewhere, Redis started empty.
func TestRedisStaysOnTheNodeThatHoldsItsData(t *testing.T) {
	// Without redis_node the constraint's value is empty, which Nomad
	// refuses at submission ("Operator \"=\" requires an RTarget").
	for _, env := range []map[string]string{operatorEnv, {}} {
		job := clusterJob(t, "redis.nomad.hcl", env)
		for _, g := range job.TaskGroups {
			if len(g.Volumes) == 0 {
				continue
			}
			pinned := false
			for _, c := range append(append([]*api.Constraint{}, job.Constraints...), g.Constraints...) {
				if isNodeName(c.LTarget) && (c.Operand == "" || c.Operand == "=") {
					pinned = c.RTarget == env["redis_node"]
				}
			}
			if !pinned {
				t.Errorf("redis group %s (redis_node %q): not constrained to ${node.unique.name} = redis_node; "+
					"a reschedule would start Redis on another client's empty volume", *g.Name, env["redis_node"])
			}
		}
	}
}

// isNodeName: Nomad keeps "${node.unique.name}" for run time; the checks'
// parser gives it its sample node's name.
func isNodeName(target string) bool {
	sample := jobcheck.RuntimeSample("node").GetAttr("unique").GetAttr("name").AsString()
	return target == "${node.unique.name}" || target == sample
}

// nomadRun runs scripts/nomad-run for a cluster with a nomad that only
// records its calls: nothing reaches a Nomad or Consul.
func nomadRun(t *testing.T, env map[string]string) (out string, err error, calls string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	fake := "#!/bin/sh\necho \"$*\" >>" + log + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "nomad"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644)
	cmd := exec.Command("../scripts/nomad-run")
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "HOME=" + dir,
		"NOMAD_ADDR=https://127.0.0.1:9", "CONSUL_HTTP_ADDR=https://127.0.0.1:9", "CONSUL_TOKEN=services-token", "CONSUL_CA=" + ca}
	for k, v := range env {
		cmd.Env = append(cmd.Env, "NOMAD_VAR_"+k+"="+v)
	}
	b, err := cmd.CombinedOutput()
	c, _ := os.ReadFile(log)
	return string(b), err, string(c)
}

func TestNomadRunRefusesAClusterDeployWithoutTheOperatorsValues(t *testing.T) {
	var required []string
	for k := range operatorEnv {
		if k != "counts" {
			required = append(required, k)
		}
	}
	sort.Strings(required)
	out, err, calls := nomadRun(t, nil)
	if err == nil {
		t.Fatalf("nomad-run deployed to a cluster with no release, NSQ, monitoring or Redis node given:\n%s", out)
	}
	for _, k := range required {
		if !strings.Contains(out, "NOMAD_VAR_"+k) {
			t.Errorf("nomad-run's refusal does not name NOMAD_VAR_%s:\n%s", k, out)
		}
	}
	if strings.Contains(calls, "job run") || strings.Contains(calls, "var put") {
		t.Errorf("nomad-run called nomad before refusing: %s", calls)
	}

	for _, bad := range []struct{ name, value string }{
		{"release_sha256", strings.Repeat("0", 64)},
		{"nsq_sha256", strings.Repeat("0", 64)},
		{"grafana_sha256", "sha256:" + strings.Repeat("ab", 32)},
		{"prometheus_sha256", strings.Repeat("ab", 31)},
		{"redis_node", ""},
	} {
		env := map[string]string{}
		for _, k := range required {
			env[k] = operatorEnv[k]
		}
		env[bad.name] = bad.value
		out, err, calls := nomadRun(t, env)
		if err == nil || !strings.Contains(out, "NOMAD_VAR_"+bad.name) {
			t.Errorf("NOMAD_VAR_%s=%s: nomad-run did not refuse naming it (err %v):\n%s", bad.name, bad.value, err, out)
		}
		for _, k := range required {
			if k != bad.name && strings.Contains(out, "NOMAD_VAR_"+k) {
				t.Errorf("NOMAD_VAR_%s=%s: the refusal also names the valid NOMAD_VAR_%s:\n%s", bad.name, bad.value, k, out)
			}
		}
		if strings.Contains(calls, "job run") {
			t.Errorf("nomad-run ran a job before refusing: %s", calls)
		}
	}
}

// The model in clusterJob, checked against the real parser: Nomad renders
// a job offline with `nomad job run -output`.
func TestNomadAppliesVarFilesAfterTheEnvironment(t *testing.T) {
	nomad := nomadBin(t)
	cmd := exec.Command(nomad, "job", "run", "-output", "-var-file=vars/cluster.hcl", "integer-api.nomad.hcl")
	cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:9")
	for k, v := range operatorEnv {
		cmd.Env = append(cmd.Env, "NOMAD_VAR_"+k+"="+v)
	}
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("nomad job run -output: %v\n%s", err, b)
	}
	var out struct{ Job api.Job }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	model := clusterJob(t, "integer-api.nomad.hcl", operatorEnv)
	real := out.Job.TaskGroups[0]
	if *real.Count != *model.TaskGroups[0].Count {
		t.Errorf("count: nomad %d, the checks' model %d", *real.Count, *model.TaskGroups[0].Count)
	}
	ra, ma := real.Tasks[0].Artifacts, model.TaskGroups[0].Tasks[0].Artifacts
	if len(ra) != 1 || len(ma) != 1 || *ra[0].GetterSource != *ma[0].GetterSource ||
		ra[0].GetterOptions["checksum"] != ma[0].GetterOptions["checksum"] {
		t.Errorf("artifacts: nomad %s, the checks' model %s", show(ra), show(ma))
	}
	cmd = exec.Command(nomad, "job", "run", "-output", "-var-file=vars/cluster.hcl", "redis.nomad.hcl")
	cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:9", "NOMAD_VAR_redis_node=client-2")
	if b, err = cmd.Output(); err != nil {
		t.Fatalf("nomad job run -output redis.nomad.hcl: %v\n%s", err, b)
	}
	var redis struct{ Job api.Job }
	json.Unmarshal(b, &redis)
	for _, g := range redis.Job.TaskGroups {
		if len(g.Constraints) != 1 || g.Constraints[0].LTarget != "${node.unique.name}" || g.Constraints[0].RTarget != "client-2" {
			t.Errorf("redis group %s: constraints %s, want ${node.unique.name} = client-2", *g.Name, show2(g.Constraints))
		}
	}
	if *ra[0].GetterSource != operatorEnv["release_url"] {
		t.Errorf("nomad job run -var-file=vars/cluster.hcl with NOMAD_VAR_release_url: artifact %s", *ra[0].GetterSource)
	}
}

func show2(cs []*api.Constraint) string {
	b, _ := json.Marshal(cs)
	return string(b)
}

func show(as []*api.TaskArtifact) string {
	b, _ := json.Marshal(as)
	return string(b)
}

// nomadBin is NOMAD_BIN or nomad on PATH; without one the test is skipped.
func nomadBin(t *testing.T) string {
	if p := os.Getenv("NOMAD_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("nomad")
	if err != nil {
		t.Skip("nomad not found (set NOMAD_BIN or put nomad on PATH)")
	}
	return p
}

func derefInt(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}
