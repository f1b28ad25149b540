// Package nomad holds the job files; these tests have the real Nomad parse
// them (`nomad job run -output`, with the var file make nomad-run gives
// each job) and check what Nomad made of them against the cluster's shape
// and the binaries' own flags.
package nomad

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/platform/deploy"
	"github.com/loopstock/loopstock/services/averager"
	"github.com/loopstock/loopstock/services/integerapi"
	"github.com/loopstock/loopstock/services/integergen"
	"github.com/loopstock/loopstock/services/nsqdgate"
)

// target is what make nomad-run hands every job on one target: the shared
// var file, the operator's NOMAD_VAR_* and the values it adds itself.
type target struct {
	shared    string
	env       map[string]string
	overrides map[string]string
}

func targets(t *testing.T) map[string]target {
	dev := monitoringFiles(t)
	dev["bin_dir"], dev["redis_node"] = "/opt/loopstock/.bin", "loopstock-dev"
	return map[string]target{
		"dev":     {shared: "vars/dev.hcl", overrides: dev},
		"cluster": {shared: "vars/cluster.hcl", env: operatorEnv, overrides: monitoringFiles(t)},
	}
}

// monitoringFiles are the variables make nomad-run fills from files of
// nomad/ (deploy.FileVariables), with Grafana on, as the operator who
// gives its tarball has it.
func monitoringFiles(t *testing.T) map[string]string {
	out := map[string]string{"grafana": "true"}
	for name, file := range deploy.FileVariables {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	return out
}

// monitoringArgs are the -var arguments of nomad/README.md's by-hand
// nomad job run of the monitoring job, with Grafana.
func monitoringArgs(t *testing.T) []string {
	var args []string
	for name, value := range monitoringFiles(t) {
		args = append(args, "-var", name+"="+value)
	}
	return args
}

func dashboard(t *testing.T) string {
	b, err := os.ReadFile("monitoring/loopstock-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// envList is env as NOMAD_VAR_name=value entries.
func envList(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, "NOMAD_VAR_"+k+"="+v)
	}
	sort.Strings(out)
	return out
}

// jobVars is the var file make nomad-run gives a job on a target.
func jobVars(t *testing.T, file string, tg target) string {
	t.Helper()
	vars, err := deploy.JobVariables(file, tg.shared, envList(tg.env), tg.overrides)
	if err != nil {
		t.Fatalf("%s with %s: %v", file, tg.shared, err)
	}
	return vars
}

var (
	parsedMu sync.Mutex
	parsed   = map[string]*api.Job{}
)

// nomadOutput runs `nomad job run -output` with args: Nomad parses the job
// file locally, with its own parser, and prints the job as JSON; no agent
// is asked. NOMAD_VAR_* of the test's environment are not passed on.
func nomadOutput(t *testing.T, env []string, args ...string) (*api.Job, error) {
	t.Helper()
	cmd := exec.Command(nomadBin(t), append([]string{"job", "run", "-output"}, args...)...)
	cmd.Env = []string{"NOMAD_ADDR=http://127.0.0.1:9", "HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH")}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nomad job run -output %s: %v\n%s%s", strings.Join(args, " "), err, stderr.Bytes(), out)
	}
	var wrapped struct{ Job *api.Job }
	if err := json.Unmarshal(out, &wrapped); err != nil || wrapped.Job == nil {
		return nil, fmt.Errorf("nomad job run -output %s printed no job (%v):\n%s", strings.Join(args, " "), err, out)
	}
	return wrapped.Job, nil
}

// parseJob is Nomad's job from a job file and the text of a var file.
func parseJob(t *testing.T, file, variables string) (*api.Job, error) {
	t.Helper()
	parsedMu.Lock()
	defer parsedMu.Unlock()
	key := file + "\x00" + variables
	if job, ok := parsed[key]; ok {
		return job, nil
	}
	varFile := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(file), ".nomad.hcl")+".vars.hcl")
	if err := os.WriteFile(varFile, []byte(variables), 0o644); err != nil {
		t.Fatal(err)
	}
	job, err := nomadOutput(t, nil, "-var-file="+varFile, file)
	if err == nil {
		parsed[key] = job
	}
	return job, err
}

func jobFiles(t *testing.T) []string {
	files, err := filepath.Glob("*.nomad.hcl")
	if err != nil || len(files) < 7 {
		t.Fatalf("job files %v (%v)", files, err)
	}
	return files
}

type parsedJob struct {
	file, target string
	job          *api.Job
}

// parseAll is every job file on every target, as make nomad-run submits it.
func parseAll(t *testing.T) []parsedJob {
	t.Helper()
	var out []parsedJob
	for _, f := range jobFiles(t) {
		for _, name := range []string{"dev", "cluster"} {
			job, err := parseJob(t, f, jobVars(t, f, targets(t)[name]))
			if err != nil {
				t.Fatalf("%s on the %s target: %v", f, name, err)
			}
			out = append(out, parsedJob{f, name, job})
		}
	}
	return out
}

func TestNomadParsesEveryJobOnEveryTarget(t *testing.T) {
	for _, p := range parseAll(t) {
		want := strings.TrimSuffix(p.file, ".nomad.hcl")
		if p.job.ID == nil || *p.job.ID != want || len(p.job.TaskGroups) == 0 {
			t.Errorf("%s (%s): job %v with %d groups, want job %s with groups", p.file, p.target, p.job.ID, len(p.job.TaskGroups), want)
		}
	}
}

func TestAMisspeltAttributeIsReportedWithItsLine(t *testing.T) {
	src, err := os.ReadFile("integer-api.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	vars := jobVars(t, "integer-api.nomad.hcl", targets(t)["dev"])
	for _, c := range []struct{ from, to string }{{"kill_timeout = ", "kill_timeuot = "}, {"restart {", "restrat {"}} {
		bad := filepath.Join(t.TempDir(), "integer-api.nomad.hcl")
		os.WriteFile(bad, bytes.Replace(src, []byte(c.from), []byte(c.to), 1), 0o644)
		_, err := parseJob(t, bad, vars)
		name := strings.Fields(c.to)[0]
		if err == nil || !regexp.MustCompile(`integer-api\.nomad\.hcl:\d+`).MatchString(err.Error()) || !strings.Contains(err.Error(), name) {
			t.Errorf("Nomad on a misspelt %s: %v; want an error naming it with integer-api.nomad.hcl:<line>", name, err)
		}
	}
}

// Why each job gets a var file of its own: Nomad refuses one that sets a
// variable the job does not declare.
func TestNomadRefusesASharedVarFileAsItIs(t *testing.T) {
	shared, err := os.ReadFile("vars/dev.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, err = parseJob(t, "integer-gen.nomad.hcl", string(shared))
	if err == nil || !strings.Contains(err.Error(), `"redis_driver"`) {
		t.Fatalf("integer-gen with vars/dev.hcl as it is (redis_driver, which it does not declare): %v", err)
	}
}

// A setting in a shared var file that no job declares is a misspelt name.
func TestEverySharedValueIsDeclaredBySomeJob(t *testing.T) {
	for _, shared := range []string{"vars/dev.hcl", "vars/cluster.hcl"} {
		unused, err := deploy.Unused(shared, jobFiles(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(unused) > 0 {
			t.Errorf("%s sets %v, which no job declares", shared, unused)
		}
	}
}

// hclBody is a job file's syntax tree.
func hclBody(t *testing.T, file string) (*hclsyntax.Body, []byte) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, file, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f.Body.(*hclsyntax.Body), src
}

// Each job declares only the variables it uses (Nomad itself refuses one
// it uses without declaring it).
func TestEveryJobUsesEveryVariableItDeclares(t *testing.T) {
	for _, f := range jobFiles(t) {
		body, src := hclBody(t, f)
		declared, err := deploy.Declared(f, src)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			if e, ok := n.(*hclsyntax.ScopeTraversalExpr); ok && e.Traversal.RootName() == "var" && len(e.Traversal) > 1 {
				if a, ok := e.Traversal[1].(hcl.TraverseAttr); ok {
					used[a.Name] = true
				}
			}
			return nil
		})
		for name := range declared {
			if !used[name] {
				t.Errorf("%s declares variable %q and never uses it", f, name)
			}
		}
	}
}

// Nomad's parse API (make nomad-run's) does not let a job read files: the
// job would parse on the command line and be refused by make nomad-run.
func TestNoJobReadsAFile(t *testing.T) {
	fileFuncs := map[string]bool{"file": true, "filebase64": true, "fileexists": true, "fileset": true, "templatefile": true, "abspath": true}
	for _, f := range jobFiles(t) {
		body, _ := hclBody(t, f)
		hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			if c, ok := n.(*hclsyntax.FunctionCallExpr); ok && fileFuncs[c.Name] {
				t.Errorf("%s: %s() at line %d: Nomad's parse API refuses it; pass the content as a variable", f, c.Name, c.NameRange.Start.Line)
			}
			return nil
		})
	}
}

func TestFormattingIsCanonical(t *testing.T) {
	files, _ := filepath.Glob("*.hcl")
	more, _ := filepath.Glob("vars/*.hcl")
	for _, f := range append(files, more...) {
		src, _ := os.ReadFile(f)
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not in canonical format (hclwrite.Format / nomad fmt would change it)", f)
		}
	}
}

// The services that register themselves in Consul (with their own check).
var selfRegistering = map[string]bool{integergen.Name: true, averager.Name: true, integerapi.Name: true}

func command(task *api.Task) string {
	s, _ := task.Config["command"].(string)
	return filepath.Base(s)
}

func args(task *api.Task) []string {
	list, _ := task.Config["args"].([]any)
	var out []string
	for _, a := range list {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// inConsul: a service Nomad registers in Consul (not in its own catalog).
func inConsul(s *api.Service) bool { return s.Provider == "" || s.Provider == "consul" }

func TestEveryJobSetsUpdateRestartResourcesAndChecks(t *testing.T) {
	for _, p := range parseAll(t) {
		where := p.file + " (" + p.target + ")"
		// Without checks, health is only "the task runs": a version whose
		// instances never answer would be kept.
		if p.job.Update == nil || p.job.Update.HealthCheck == nil || *p.job.Update.HealthCheck != "checks" || p.job.Update.MinHealthyTime == nil {
			t.Errorf("%s: no update block with health_check = \"checks\" and min_healthy_time", where)
		}
		if p.job.Type == nil || *p.job.Type != "system" {
			if p.job.Update == nil || p.job.Update.AutoRevert == nil || !*p.job.Update.AutoRevert {
				t.Errorf("%s: update without auto_revert", where)
			}
		}
		for _, g := range p.job.TaskGroups {
			gw := where + " group " + *g.Name
			if g.RestartPolicy == nil {
				t.Errorf("%s: no restart policy", gw)
			}
			// Nomad gives a group without its own reschedule block the job's.
			if (p.job.Type == nil || *p.job.Type != "system") && g.ReschedulePolicy == nil && p.job.Reschedule == nil {
				t.Errorf("%s: no reschedule policy, on the group or the job", gw)
			}
			checked := false
			for _, s := range g.Services {
				checked = checked || len(s.Checks) > 0
				if inConsul(s) && selfRegistering[s.Name] {
					t.Errorf("%s: Nomad registers %s in Consul, which it registers itself in: it would appear twice", gw, s.Name)
				}
			}
			if !checked {
				t.Errorf("%s: no service check, so no deployment health", gw)
			}
			for _, task := range g.Tasks {
				tw := gw + " task " + task.Name
				if task.Resources == nil || task.Resources.CPU == nil || task.Resources.MemoryMB == nil {
					t.Errorf("%s: no cpu and memory resources", tw)
				}
				if task.KillTimeout == nil || *task.KillTimeout < 5e9 {
					t.Errorf("%s: kill_timeout missing or under 5s (graceful shutdown needs it)", tw)
				}
				if selfRegistering[command(task)] {
					checksHealthOnItsPort(t, tw, g, task)
				}
			}
		}
	}
}

// checksHealthOnItsPort: a self-registering service's group has a Nomad
// check of /health on the port the binary listens on.
func checksHealthOnItsPort(t *testing.T, where string, g *api.TaskGroup, task *api.Task) {
	t.Helper()
	prefix := strings.ToUpper(strings.ReplaceAll(command(task), "-", "_")) + "_"
	m := regexp.MustCompile(`^\$\{NOMAD_ADDR_(\w+)\}$`).FindStringSubmatch(task.Env[prefix+"HTTP_ADDR"])
	if m == nil {
		t.Errorf("%s: %sHTTP_ADDR is %q, not a port's ${NOMAD_ADDR_<label>}", where, prefix, task.Env[prefix+"HTTP_ADDR"])
		return
	}
	for _, s := range g.Services {
		for _, c := range s.Checks {
			port := c.PortLabel
			if port == "" {
				port = s.PortLabel
			}
			if !inConsul(s) && c.Type == "http" && c.Path == "/health" && port == m[1] {
				return
			}
		}
	}
	t.Errorf("%s: no Nomad (provider \"nomad\") http check of /health on port %q, where %s listens: deployments would not wait for it",
		where, m[1], command(task))
}

// runtimeEnv is what Nomad puts in a task's environment at run time, for
// the group's ports: the values the tasks' settings are interpolated with.
func runtimeEnv(g *api.TaskGroup) map[string]string {
	env := map[string]string{
		"NOMAD_ALLOC_ID": "5f0e8c2a-1d3b-4c5e-9f7a-0b1c2d3e4f50", "NOMAD_ALLOC_DIR": "/alloc",
		"NOMAD_TASK_DIR": "/local", "NOMAD_SECRETS_DIR": "/secrets",
	}
	for _, n := range g.Networks {
		for i, p := range append(append([]api.Port{}, n.DynamicPorts...), n.ReservedPorts...) {
			port := fmt.Sprint(25000 + i)
			env["NOMAD_IP_"+p.Label], env["NOMAD_PORT_"+p.Label], env["NOMAD_ADDR_"+p.Label] = "10.0.0.5", port, "10.0.0.5:"+port
		}
	}
	return env
}

var runtimeRef = regexp.MustCompile(`\$\{([A-Za-z0-9_.]+)\}`)

// interpolate replaces ${NAME} as Nomad does at run time; a name Nomad
// would not know is an error (a misspelt port label, say).
func interpolate(s string, env map[string]string) (string, error) {
	var unknown []string
	out := runtimeRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := runtimeRef.FindStringSubmatch(ref)[1]
		v, ok := env[name]
		if !ok {
			unknown = append(unknown, ref)
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("%s: Nomad has no %s at run time", s, strings.Join(unknown, ", "))
	}
	return out, nil
}

// taskEnv is a task's environment at run time for the flags check: the env
// block interpolated, and what env templates provide.
func taskEnv(t *testing.T, where string, g *api.TaskGroup, task *api.Task) map[string]string {
	rt := runtimeEnv(g)
	env := map[string]string{}
	for k, v := range task.Env {
		s, err := interpolate(v, rt)
		if err != nil {
			t.Errorf("%s: env %s: %v", where, k, err)
		}
		env[k] = s
	}
	for _, tpl := range task.Templates {
		if tpl.Envvars != nil && *tpl.Envvars && tpl.EmbeddedTmpl != nil {
			for _, m := range regexp.MustCompile(`(?m)([A-Z_]+)=\{\{`).FindAllStringSubmatch(*tpl.EmbeddedTmpl, -1) {
				env[m[1]] = "sample-secret-token"
			}
		}
	}
	return env
}

func TestTaskSettingsAreAcceptedByTheBinaries(t *testing.T) {
	parse := map[string]func([]string) error{
		integergen.Name: func(a []string) error { _, err := integergen.ParseArgs(a); return err },
		averager.Name:   func(a []string) error { _, err := averager.ParseArgs(a); return err },
		integerapi.Name: func(a []string) error { _, err := integerapi.ParseArgs(a); return err },
		nsqdgate.Name:   func(a []string) error { _, err := nsqdgate.ParseArgs(a); return err },
	}
	seen := map[string]bool{}
	for _, p := range parseAll(t) {
		for _, g := range p.job.TaskGroups {
			for _, task := range g.Tasks {
				name := command(task)
				check, ok := parse[name]
				if !ok {
					continue
				}
				seen[name] = true
				env := taskEnv(t, p.file+" ("+p.target+")", g, task)
				prefix := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
				for k, v := range env {
					if !strings.HasPrefix(k, prefix) && !strings.HasPrefix(k, "CONSUL_") {
						t.Errorf("%s: %s=%s is not a setting of %s", p.file, k, v, name)
					}
				}
				t.Run(p.target+"/"+name, func(t *testing.T) {
					for k, v := range env {
						t.Setenv(k, v)
					}
					if err := check(args(task)); err != nil {
						t.Errorf("%s (%s): %s refuses the task's settings: %v", p.file, p.target, name, err)
					}
				})
			}
		}
	}
	for name := range parse {
		if !seen[name] {
			t.Errorf("no job runs %s", name)
		}
	}
}

func TestEveryDiscoveredServiceIsRegistered(t *testing.T) {
	registered := map[string]string{}
	for _, p := range parseAll(t) {
		for _, g := range p.job.TaskGroups {
			services := append([]*api.Service{}, g.Services...)
			for _, task := range g.Tasks {
				services = append(services, task.Services...)
				if name := command(task); selfRegistering[name] {
					registered[name] = p.file + " (registers itself)"
				}
			}
			for _, s := range services {
				if inConsul(s) {
					registered[s.Name] = p.file
				}
			}
		}
	}
	gen, avg, apiOpts := integergen.NewOptions(), averager.NewOptions(), integerapi.NewOptions()
	discovered := map[string]string{
		gen.NSQDService: "integer-gen", avg.LookupdService: "integeraverage-cal", avg.NSQDService: "integeraverage-cal (dead letters)",
		avg.APIService: "integeraverage-cal", apiOpts.RedisService: "integer-api",
	}
	var names []string
	for n := range discovered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if registered[n] == "" {
			t.Errorf("%s discovers %q in consul, but no job registers it there", discovered[n], n)
		}
	}
}

var (
	nomadVarRef = regexp.MustCompile(`nomadVar "([^"]+)"`)
	itemRef     = regexp.MustCompile(`\{\{-?\s*\.(\w+)\s*-?\}\}`)
)

// secretsRead are the Nomad variable items a job's templates read:
// path → items.
func secretsRead(job *api.Job) map[string][]string {
	seen := map[string]map[string]bool{}
	for _, g := range job.TaskGroups {
		for _, task := range g.Tasks {
			for _, tpl := range task.Templates {
				if tpl.EmbeddedTmpl == nil {
					continue
				}
				for _, m := range nomadVarRef.FindAllStringSubmatch(*tpl.EmbeddedTmpl, -1) {
					if seen[m[1]] == nil {
						seen[m[1]] = map[string]bool{}
					}
					for _, item := range itemRef.FindAllStringSubmatch(*tpl.EmbeddedTmpl, -1) {
						seen[m[1]][item[1]] = true
					}
				}
			}
		}
	}
	out := map[string][]string{}
	for path, items := range seen {
		for item := range items {
			out[path] = append(out[path], item)
		}
		sort.Strings(out[path])
	}
	return out
}

// wantSecrets are the items make nomad-run writes for a job: its own, and
// with consul_tls the Consul token and CA.
func wantSecrets(job string, consulTLS bool) map[string][]string {
	items := append([]string{}, deploy.Secrets[job]...)
	for _, j := range deploy.ConsulSecrets {
		if consulTLS && j == job {
			items = append(items, "consul_token", "consul_ca")
		}
	}
	// The data plane's mutual TLS: on the cluster, and in the jobs that
	// run only there (the Sentinels) whatever the target.
	if consulTLS || slices.Contains(deploy.ClusterOnly, job) {
		items = append(items, deploy.DataSecrets[job]...)
	}
	if len(items) == 0 {
		return map[string][]string{}
	}
	sort.Strings(items)
	return map[string][]string{"nomad/jobs/" + job: items}
}

// A template waits until its Nomad variable exists: a job reading one
// make nomad-run (or the README's nomad var put) does not write stays
// pending. Each job reads exactly what is written for it.
func TestEachJobReadsExactlyTheNomadVariablesWrittenForIt(t *testing.T) {
	for _, p := range parseAll(t) {
		got, want := secretsRead(p.job), wantSecrets(*p.job.ID, p.target == "cluster")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s (%s): its templates read %v; make nomad-run writes %v", p.file, p.target, got, want)
		}
	}
}

// Every artifact a job downloads is checked against its SHA-256.
func TestEveryArtifactIsPinnedWithAChecksum(t *testing.T) {
	sum := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	n := 0
	for _, p := range parseAll(t) {
		for where, a := range artifacts(p.job) {
			n++
			if c := a.GetterOptions["checksum"]; !sum.MatchString(c) {
				t.Errorf("%s (%s) %s: artifact %s with checksum %q, want sha256:<64 hex digits>", p.file, p.target, where, *a.GetterSource, c)
			}
		}
	}
	if n == 0 {
		t.Fatal("no artifact in any job on any target: the cluster's come from NOMAD_VAR_*_url")
	}
}
