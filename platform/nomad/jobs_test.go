// Package nomad holds the job files; these tests check them the way Nomad
// reads them (internal/jobcheck) and against the binaries' own flags.
package nomad

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"

	"github.com/loopstock/loopstock/platform/jobcheck"
	"github.com/loopstock/loopstock/services/averager"
	"github.com/loopstock/loopstock/services/integerapi"
	"github.com/loopstock/loopstock/services/integergen"
)

// targets are the var files, with what make nomad-run adds on the command line.
var targets = map[string][]string{
	"dev":     {"vars/dev.hcl", "bin_dir = \"/opt/loopstock/.bin\"\n"},
	"cluster": {"vars/cluster.hcl"},
}

func jobFiles(t *testing.T) []string {
	files, err := filepath.Glob("*.nomad.hcl")
	if err != nil || len(files) < 6 {
		t.Fatalf("job files %v (%v)", files, err)
	}
	return files
}

func varFiles(t *testing.T, target string) map[string][]byte {
	out := map[string][]byte{}
	for i, f := range targets[target] {
		if strings.HasSuffix(f, ".hcl") {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[f] = src
		} else {
			out["-var "+strings.Fields(f)[0]+" (#"+string(rune('0'+i))+")"] = []byte(f)
		}
	}
	return out
}

type parsed struct {
	file, target string
	job          *api.Job
}

func parseAll(t *testing.T) []parsed {
	var out []parsed
	for _, f := range jobFiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"dev", "cluster"} {
			pf, diags := jobcheck.Parse(f, src, varFiles(t, target))
			if diags.HasErrors() {
				t.Fatalf("%s with %s variables:\n%s", f, target, diags.Error())
			}
			out = append(out, parsed{f, target, pf.Job})
		}
	}
	return out
}

func TestJobFilesDecodeIntoNomadTypes(t *testing.T) {
	for _, p := range parseAll(t) {
		if p.job.ID == nil || *p.job.ID == "" || len(p.job.TaskGroups) == 0 {
			t.Errorf("%s (%s): empty job", p.file, p.target)
		}
	}
}

func TestAMisspeltAttributeIsReportedWithItsLine(t *testing.T) {
	src, _ := os.ReadFile("integer-api.nomad.hcl")
	bad := bytes.Replace(src, []byte("kill_timeout = "), []byte("kill_timeuot = "), 1)
	_, diags := jobcheck.Parse("integer-api.nomad.hcl", bad, varFiles(t, "dev"))
	if !diags.HasErrors() || !regexp.MustCompile(`integer-api\.nomad\.hcl:\d+`).MatchString(diags.Error()) ||
		!strings.Contains(diags.Error(), "kill_timeuot") {
		t.Fatalf("a misspelt attribute gave: %v", diags)
	}
	bad = bytes.Replace(src, []byte("restart {"), []byte("restrat {"), 1)
	if _, diags := jobcheck.Parse("x.nomad.hcl", bad, varFiles(t, "dev")); !diags.HasErrors() {
		t.Fatal("a misspelt block was accepted")
	}
	if _, diags := jobcheck.Parse("x.nomad.hcl", src, map[string][]byte{"extra.hcl": []byte("no_such_variable = 1\n")}); !diags.HasErrors() {
		t.Fatal("a var file setting an undeclared variable was accepted")
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
	v, ok := task.Config["command"].(cty.Value)
	if !ok || !v.IsWhollyKnown() || v.Type() != cty.String {
		return ""
	}
	return filepath.Base(v.AsString())
}

func args(task *api.Task) []string {
	v, ok := task.Config["args"].(cty.Value)
	if !ok || !v.IsWhollyKnown() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}

func TestEveryJobSetsUpdateRestartResourcesAndChecks(t *testing.T) {
	for _, p := range parseAll(t) {
		where := p.file + " (" + p.target + ")"
		if p.job.Update == nil || p.job.Update.HealthCheck == nil || p.job.Update.MinHealthyTime == nil {
			t.Errorf("%s: no update block with health-based progress", where)
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
				if selfRegistering[s.Name] {
					t.Errorf("%s: Nomad registers %s, which registers itself: it would appear twice", gw, s.Name)
				}
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
					checked = true
				}
			}
			if !checked {
				t.Errorf("%s: no consul health check (no service check, no self-registering binary)", gw)
			}
		}
	}
}

// sampleEnv is what a task's environment holds at run time for the flags
// check: the env block, and what env templates provide.
func sampleEnv(task *api.Task) map[string]string {
	env := map[string]string{}
	for k, v := range task.Env {
		env[k] = v
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
				env := sampleEnv(task)
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
			for _, s := range g.Services {
				registered[s.Name] = p.file
			}
			for _, task := range g.Tasks {
				for _, s := range task.Services {
					registered[s.Name] = p.file
				}
				if name := command(task); selfRegistering[name] {
					registered[name] = p.file + " (registers itself)"
				}
			}
		}
	}
	gen, avg, api := integergen.NewOptions(), averager.NewOptions(), integerapi.NewOptions()
	discovered := map[string]string{
		gen.NSQDService: "integer-gen", avg.LookupdService: "integeraverage-cal", avg.NSQDService: "integeraverage-cal (dead letters)",
		avg.APIService: "integeraverage-cal", api.RedisService: "integer-api",
	}
	var names []string
	for n := range discovered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if registered[n] == "" {
			t.Errorf("%s discovers %q in consul, but no job registers it", discovered[n], n)
		}
	}
}

// Every job declares the same variables, so one var file serves them all.
func TestEveryJobDeclaresTheSameVariables(t *testing.T) {
	var first, firstFile string
	for _, f := range jobFiles(t) {
		src, _ := os.ReadFile(f)
		i := bytes.Index(src, []byte("# ---- variables shared by every job file"))
		if i < 0 {
			t.Errorf("%s has no shared variables section", f)
			continue
		}
		if first == "" {
			first, firstFile = string(src[i:]), f
		} else if string(src[i:]) != first {
			t.Errorf("%s's variables differ from %s's", f, firstFile)
		}
	}
}
