package tofu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/loopstock/loopstock/platform/flatcar"
)

// workspace copies terraform/ and ignition/ into a temporary folder, so
// that tofu's .terraform folders, lock files and state stay out of the
// checkout, and returns it with a CLI config for tofu.
func workspace(t *testing.T) (root, cliConfig string) {
	t.Helper()
	if skipReason != "" {
		t.SkipNow() // TestMain prints the reason once
	}
	root = t.TempDir()
	for _, d := range []string{"terraform", "ignition"} {
		if out, err := exec.Command("cp", "-r", d, root+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", d, err, out)
		}
	}
	cliConfig = os.Getenv("TF_CLI_CONFIG_FILE")
	if mirror != "" {
		// Set explicitly: the environment may point TF_CLI_CONFIG_FILE at
		// another file. Only the mirror: nothing is downloaded.
		cliConfig = filepath.Join(root, "tofurc.hcl")
		rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"registry.opentofu.org/*/*\"]\n  }\n}\n", mirror)
		if err := os.WriteFile(cliConfig, []byte(rc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, cliConfig
}

// run runs tofu in dir and returns its standard output.
func run(t *testing.T, dir, cliConfig string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tofuBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_INPUT=0")
	if cliConfig != "" {
		cmd.Env = append(cmd.Env, "TF_CLI_CONFIG_FILE="+cliConfig)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tofu %s in %s: %v\n%s%s", strings.Join(args, " "), dir, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// providers lists the provider sources the module in dir needs, its called
// modules' included.
func providers(t *testing.T, dir string, out map[string]bool) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		for _, b := range file.Body.(*hclsyntax.Body).Blocks {
			switch b.Type {
			case "terraform":
				for _, rp := range b.Body.Blocks {
					if rp.Type == "required_providers" {
						for _, a := range rp.Body.Attributes {
							v, _ := a.Expr.Value(nil)
							out[v.GetAttr("source").AsString()] = true
						}
					}
				}
			case "module":
				v, _ := b.Body.Attributes["source"].Expr.Value(nil)
				providers(t, filepath.Join(dir, v.AsString()), out)
			}
		}
	}
}

// missing lists the providers of the module in dir that the mirror lacks.
func missing(t *testing.T, dir string) []string {
	need := map[string]bool{}
	providers(t, dir, need)
	var out []string
	for p := range need {
		if _, err := os.Stat(filepath.Join(mirror, "registry.opentofu.org", p)); err != nil {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func TestExamplesValidate(t *testing.T) {
	root, rc := workspace(t)
	examples, _ := filepath.Glob(filepath.Join(root, "terraform/examples/*"))
	if len(examples) < 2 {
		t.Fatalf("examples: %v", examples)
	}
	for _, ex := range examples {
		name := filepath.Base(ex)
		if mirror != "" {
			if m := missing(t, ex); len(m) > 0 {
				t.Logf("examples/%s: skipped, the mirror lacks %v", name, m)
				skipped++
				continue
			}
		}
		run(t, ex, rc, "init", "-backend=false", "-input=false", "-no-color")
		run(t, ex, rc, "validate", "-no-color")
		t.Logf("examples/%s: tofu validate passed", name)
		validated++
	}
}

// The Go rendering and Terraform's, from the same inputs: the Vagrant
// cluster, a three-server cluster on a private subnet (the cluster test's
// shape) and an AWS-like one (cloud auto-join, whose retry_join carries
// spaces and an equals sign).
var clusters = map[string]flatcar.Cluster{
	"vagrant": flatcar.VagrantCluster("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa vagrant",
		"http://10.0.2.2:8088/sysext", "1.21.4", strings.Repeat("ab", 32), "1.10.0", strings.Repeat("cd", 32)),
	"three-servers": {
		Datacenter: "dc1", ServerCount: 3, RetryJoin: []string{"10.88.0.10", "10.88.0.11", "10.88.0.12"},
		ClusterCIDR: "10.88.0.0/24", SSHAuthorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa test",
		FlatcarChannel: "stable", NTPServers: []string{"10.88.0.1"}, ConsulVersion: "1.21.4", NomadVersion: "1.10.0",
		ConsulSHA256: strings.Repeat("01", 32), NomadSHA256: strings.Repeat("23", 32), SysextBaseURL: "http://10.88.0.1:8080/sysext",
	},
	"aws": {
		Datacenter: "eu1", ServerCount: 3, RetryJoin: []string{"provider=aws tag_key=loopstock-cluster tag_value=demo"},
		ClusterCIDR: "10.0.0.0/16", SSHAuthorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa ops@example",
		FlatcarChannel: "stable", NTPServers: []string{"169.254.169.123"}, ConsulVersion: "1.21.4", NomadVersion: "1.10.0",
		ConsulSHA256: strings.Repeat("45", 32), NomadSHA256: strings.Repeat("67", 32), SysextBaseURL: "https://extensions.flatcar.org/extensions",
	},
}

// rootFor writes a root module (JSON syntax, so every value goes in as is)
// that calls modules/ignition with the cluster's inputs.
func rootFor(t *testing.T, dir, module string, c flatcar.Cluster) {
	t.Helper()
	cfg := map[string]any{
		"module": map[string]any{"ignition": map[string]any{
			"source":               module,
			"server_count":         c.ServerCount,
			"datacenter":           c.Datacenter,
			"retry_join":           c.RetryJoin,
			"cluster_cidr":         c.ClusterCIDR,
			"ssh_authorized_key":   c.SSHAuthorizedKey,
			"flatcar_channel":      c.FlatcarChannel,
			"ntp_servers":          c.NTPServers,
			"consul_version":       c.ConsulVersion,
			"nomad_version":        c.NomadVersion,
			"consul_sysext_sha256": c.ConsulSHA256,
			"nomad_sysext_sha256":  c.NomadSHA256,
			"sysext_base_url":      c.SysextBaseURL,
			"snippets":             []string{},
		}},
		"output": map[string]any{
			"servers": map[string]any{"value": "${module.ignition.servers}"},
			"client":  map[string]any{"value": "${module.ignition.client}"},
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// normalize re-encodes JSON with sorted keys and no insignificant space.
func normalize(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out, _ := json.Marshal(v)
	return out
}

// firstDifference names where two JSON documents first differ.
func firstDifference(path string, a, b any) string {
	if reflect.DeepEqual(a, b) {
		return ""
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			if d := firstDifference(path+"."+k, av[k], bv[k]); d != "" {
				return d
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		for i := range av {
			if d := firstDifference(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i]); d != "" {
				return d
			}
		}
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return fmt.Sprintf("%s: terraform %.300s\n   go        %.300s", path, ja, jb)
}

func TestTerraformRenderingEqualsGo(t *testing.T) {
	root, rc := workspace(t)
	if mirror != "" {
		if m := missing(t, filepath.Join(root, "terraform/modules/ignition")); len(m) > 0 {
			t.Fatalf("the mirror lacks %v, which modules/ignition needs", m)
		}
	}
	names := make([]string, 0, len(clusters))
	for n := range clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := clusters[name]
		dir := filepath.Join(root, "render-"+name)
		// A relative source: tofu copies a module given by absolute path on
		// its own, away from the ignition/ folder it reads.
		rootFor(t, dir, "../terraform/modules/ignition", c)
		run(t, dir, rc, "init", "-backend=false", "-input=false", "-no-color")
		run(t, dir, rc, "apply", "-auto-approve", "-input=false", "-no-color")
		var out struct {
			Servers struct{ Value []string } `json:"servers"`
			Client  struct{ Value string }   `json:"client"`
		}
		if err := json.Unmarshal(run(t, dir, rc, "output", "-json"), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Servers.Value) != c.ServerCount {
			t.Fatalf("%s: %d servers rendered, want %d", name, len(out.Servers.Value), c.ServerCount)
		}
		check := func(_ string, host string, tf string, goIgn []byte, err error) {
			compared++
			if err != nil {
				t.Errorf("%s %s: Go rendering: %v", name, host, err)
				return
			}
			a, b := normalize(t, host, []byte(tf)), normalize(t, host, goIgn)
			if bytes.Equal(a, b) {
				equal++
				return
			}
			var av, bv any
			json.Unmarshal(a, &av)
			json.Unmarshal(b, &bv)
			t.Errorf("%s %s: Terraform's Ignition differs from the Go rendering at %s", name, host, firstDifference("", av, bv))
		}
		for i, tf := range out.Servers.Value {
			ign, err := c.Server("ignition", i)
			check(name, fmt.Sprintf("server %d", i), tf, ign, err)
		}
		ign, err := c.Client("ignition")
		check(name, "client", out.Client.Value, ign, err)
	}
}
