package nomad

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/platform/deploy"
)

// operatorEnv is what an operator exports for a cluster deploy, as
// nomad/README.md documents it: each value differs from every default.
var operatorEnv = map[string]string{
	"release_url":         "https://releases.example.org/loopstock_9.9.9_linux_amd64.tar.gz",
	"release_sha256":      strings.Repeat("a1", 32),
	"nsq_url":             "https://releases.example.org/nsq-1.3.0.linux-amd64.go1.21.5.tar.gz",
	"nsq_sha256":          strings.Repeat("b2", 32),
	"prometheus_url":      "https://releases.example.org/prometheus-3.16.0.linux-amd64.tar.gz",
	"prometheus_sha256":   strings.Repeat("c3", 32),
	"alertmanager_url":    "https://releases.example.org/alertmanager-0.25.0.linux-amd64.tar.gz",
	"alertmanager_sha256": strings.Repeat("e5", 32),
	"grafana_url":         "https://releases.example.org/grafana-11.2.0.linux-amd64.tar.gz",
	"grafana_sha256":      strings.Repeat("d4", 32),
	"redis_node":          "client-2",
	"counts":              `{nsqlookupd = 1, integer_gen = 3, averager = 1, api = 4}`,
}

// clusterJob is Nomad's job from a job file with the var file make
// nomad-run gives it on the cluster, the operator exporting env as
// NOMAD_VAR_*.
func clusterJob(t *testing.T, file string, env map[string]string) *api.Job {
	t.Helper()
	tg := targets(t)["cluster"]
	tg.env = env
	job, err := parseJob(t, file, jobVars(t, file, tg))
	if err != nil {
		t.Fatalf("%s on the cluster: %v", file, err)
	}
	return job
}

// sharedNames are the names a shared var file sets.
func sharedNames(t *testing.T, file string) map[string]string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	names, err := deploy.Assignments(file, src)
	if err != nil {
		t.Fatal(err)
	}
	return names
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
// Now each job's var file takes them from the environment.
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
	// They belong to a release and a cluster, not to the repository.
	for name := range sharedNames(t, "vars/cluster.hcl") {
		if _, ok := operatorEnv[name]; ok {
			t.Errorf("vars/cluster.hcl sets %s, the operator's value (NOMAD_VAR_%s)", name, name)
		}
	}
}

// Defect: the monitoring job's checksums defaulted to "" and nothing set them.
func TestMonitoringArtifactsAreCheckedOnTheCluster(t *testing.T) {
	job := clusterJob(t, "monitoring.nomad.hcl", operatorEnv)
	got := artifacts(job)
	if len(got) != 3 {
		t.Fatalf("monitoring: %d artifacts, want Prometheus, Alertmanager and Grafana", len(got))
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
			hosts := clients
			if job.NodePool != nil && *job.NodePool == "quorum" {
				hosts = 3 // the servers' pool (ignition/server.yaml): three on every platform
			}
			if distinct && g.Count != nil && *g.Count > hosts {
				t.Errorf("%s group %s: %d allocations on distinct hosts, the default cluster has %d clients",
					f, *g.Name, *g.Count, clients)
			}
		}
	}
}

// Defect: Nomad spread both instances of a service onto one client when
// the other was down and never moved one back, so losing that client next
// stopped the service (reads 38 s gone in the cluster test's host loss).
// On the cluster each service's instances are on distinct clients; a dev
// agent, one host, runs them all.
func TestNoClientHoldsEveryInstanceOfAService(t *testing.T) {
	for name, tg := range targets(t) {
		want := name == "cluster"
		for _, f := range []string{"integer-gen.nomad.hcl", "integeraverage-cal.nomad.hcl", "integer-api.nomad.hcl"} {
			job, err := parseJob(t, f, jobVars(t, f, tg))
			if err != nil {
				t.Fatalf("%s on %s: %v", f, name, err)
			}
			for _, g := range job.TaskGroups {
				distinct := false
				for _, c := range append(append([]*api.Constraint{}, job.Constraints...), g.Constraints...) {
					distinct = distinct || (c.Operand == "distinct_hosts" && c.RTarget != "false")
				}
				if distinct != want {
					t.Errorf("%s group %s on %s: distinct_hosts %v, want %v", f, *g.Name, name, distinct, want)
				}
			}
		}
	}
}

// Defect: with max_client_disconnect the lost node's Redis allocation
// stayed unknown, so a replaced client (a new node of the same name) never
// got one and the store stayed without its second copy (the cluster test's
// replaced client). The Sentinels decide which copy serves; Nomad must
// replace a lost allocation.
func TestAReplacedClientGetsItsRedis(t *testing.T) {
	job := clusterJob(t, "redis.nomad.hcl", operatorEnv)
	for _, g := range job.TaskGroups {
		if *g.Name != "replicas" {
			continue
		}
		if g.MaxClientDisconnect != nil || (g.Disconnect != nil && g.Disconnect.LostAfter != nil) {
			t.Errorf("redis group replicas holds a lost node's allocation (max_client_disconnect %v): a replaced client would get no Redis", derefDuration(g.MaxClientDisconnect))
		}
		return
	}
	t.Fatal("redis.nomad.hcl on the cluster has no group replicas")
}

func derefDuration(p *time.Duration) time.Duration {
	if p == nil {
		return 0
	}
	return *p
}

// Defect: Redis's data is in one client's host volume, and every client
// has a volume of that name: rescheduled elsewhere, a single Redis started
// empty. The replicated store (the cluster's) keeps one copy per client:
// two allocations on distinct hosts.
func TestRedisStaysOnTheNodeThatHoldsItsData(t *testing.T) {
	job := clusterJob(t, "redis.nomad.hcl", operatorEnv)
	for _, g := range job.TaskGroups {
		distinct := false
		for _, c := range g.Constraints {
			distinct = distinct || c.Operand == "distinct_hosts"
		}
		if want := *g.Name == "replicas"; (*g.Count == 2) != want || distinct != want {
			t.Errorf("redis group %s on the cluster: count %d, distinct_hosts %v; want only group replicas, 2 on distinct hosts", *g.Name, *g.Count, distinct)
		}
	}
	// Without redis_node the constraint's value is empty, which Nomad
	// refuses at submission ("Operator \"=\" requires an RTarget").
	for _, env := range []map[string]string{operatorEnv, {}} {
		env = maps.Clone(env)
		env["redis_replicated"] = "false"
		job := clusterJob(t, "redis.nomad.hcl", env)
		for _, g := range job.TaskGroups {
			if len(g.Volumes) == 0 || *g.Name == "replicas" {
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

// isNodeName: Nomad keeps "${node.unique.name}" for run time.
func isNodeName(target string) bool { return target == "${node.unique.name}" }

// By hand on the cluster (nomad/README.md, "Cluster"): the operator's
// NOMAD_VAR_* exports and no var file, the defaults being the cluster's.
// Nomad makes of that exactly the job make nomad-run submits.
func TestByHandOnTheClusterIsWhatNomadRunSubmits(t *testing.T) {
	for _, f := range jobFiles(t) {
		viaRun := clusterJob(t, f, operatorEnv)
		args := []string{f}
		if f == "monitoring.nomad.hcl" {
			args = append(monitoringArgs(t), f)
		}
		byHand, err := nomadOutput(t, envList(operatorEnv), args...)
		if err != nil {
			t.Fatalf("by hand: %v", err)
		}
		a, _ := json.MarshalIndent(byHand, "", " ")
		b, _ := json.MarshalIndent(viaRun, "", " ")
		if string(a) != string(b) {
			t.Errorf("%s: nomad job run with the operator's NOMAD_VAR_* differs from what make nomad-run submits:\n%s",
				f, firstDifference(string(a), string(b)))
		}
	}
}

// firstDifference shows the first line where two texts differ.
func firstDifference(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i+1) + ": by hand " + strings.TrimSpace(al[i]) + ", make nomad-run " + strings.TrimSpace(bl[i])
		}
	}
	return "one is longer"
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
