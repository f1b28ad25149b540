// Package terraform holds the Terraform modules (one per platform) and
// their example roots. These tests need neither OpenTofu nor providers:
// every file parses and is in canonical format, every var.x is declared,
// every declared variable is used, and every module call passes exactly the
// variables the called module declares (all required ones included).
// `tofu validate` itself runs in platform/tofu (make test-terraform), on
// every example whose providers are at hand.
package terraform

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// module is one directory of .tf files.
type module struct {
	dir       string
	variables map[string]bool // name → has a default
	used      map[string]hcl.Range
	calls     []call
}

type call struct {
	name, source string
	args         map[string]hcl.Range
	rng          hcl.Range
}

var metaArgs = map[string]bool{"source": true, "version": true, "count": true, "for_each": true, "providers": true, "depends_on": true}

func load(t *testing.T, dir string) *module {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	if len(files) == 0 {
		t.Fatalf("%s: no .tf files", dir)
	}
	m := &module{dir: dir, variables: map[string]bool{}, used: map[string]hcl.Range{}}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			t.Errorf("%s is not in canonical format (tofu fmt would change it)", f)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Errorf("%s", diags.Error())
			continue
		}
		body := file.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				_, hasDefault := b.Body.Attributes["default"]
				m.variables[b.Labels[0]] = hasDefault
			case "module":
				c := call{name: b.Labels[0], args: map[string]hcl.Range{}, rng: b.DefRange()}
				for name, a := range b.Body.Attributes {
					if name == "source" {
						v, _ := a.Expr.Value(nil)
						c.source = v.AsString()
					} else if !metaArgs[name] {
						c.args[name] = a.SrcRange
					}
				}
				m.calls = append(m.calls, c)
			}
		}
		walk(body, m.used)
	}
	return m
}

// walk records every var.x referenced anywhere in body.
func walk(body *hclsyntax.Body, used map[string]hcl.Range) {
	for _, a := range body.Attributes {
		for _, tr := range a.Expr.Variables() {
			if tr.RootName() == "var" && len(tr) > 1 {
				if attr, ok := tr[1].(hcl.TraverseAttr); ok {
					used[attr.Name] = tr.SourceRange()
				}
			}
		}
	}
	for _, b := range body.Blocks {
		walk(b.Body, used)
	}
}

func dirs(t *testing.T) []string {
	mods, _ := filepath.Glob("modules/*")
	examples, _ := filepath.Glob("examples/*")
	all := append(mods, examples...)
	if len(mods) < 5 || len(examples) < 2 {
		t.Fatalf("modules %v examples %v", mods, examples)
	}
	return all
}

func TestModulesAreConsistent(t *testing.T) {
	loaded := map[string]*module{}
	for _, d := range dirs(t) {
		loaded[filepath.Clean(d)] = load(t, d)
	}
	for _, m := range loaded {
		for name, rng := range m.used {
			if _, ok := m.variables[name]; !ok {
				t.Errorf("%s: var.%s is not declared", rng, name)
			}
		}
		for name := range m.variables {
			if _, ok := m.used[name]; !ok {
				t.Errorf("%s: variable %q is declared but never used", m.dir, name)
			}
		}
		for _, c := range m.calls {
			target := loaded[filepath.Clean(filepath.Join(m.dir, c.source))]
			if target == nil {
				t.Errorf("%s: module %q calls %q, which is not a module here", c.rng, c.name, c.source)
				continue
			}
			var names []string
			for a := range c.args {
				names = append(names, a)
			}
			sort.Strings(names)
			for _, a := range names {
				if _, ok := target.variables[a]; !ok {
					t.Errorf("%s: module %q passes %q, which %s does not declare", c.args[a], c.name, a, target.dir)
				}
			}
			for v, hasDefault := range target.variables {
				if _, ok := c.args[v]; !ok && !hasDefault {
					t.Errorf("%s: module %q does not pass %q, which %s requires", c.rng, c.name, v, target.dir)
				}
			}
		}
	}
}

// Typhoon's rule: the platforms share their variable names.
func TestPlatformsShareVariableNames(t *testing.T) {
	aws, libvirt := load(t, "modules/aws"), load(t, "modules/libvirt")
	for _, name := range []string{"cluster_name", "server_count", "client_count", "os_image", "ssh_authorized_key",
		"datacenter", "consul_version", "nomad_version", "consul_sysext_sha256", "nomad_sysext_sha256", "sysext_base_url",
		"ntp_servers", "snippets", "disk_size"} {
		if _, ok := aws.variables[name]; !ok {
			t.Errorf("modules/aws lacks variable %q", name)
		}
		if _, ok := libvirt.variables[name]; !ok {
			t.Errorf("modules/libvirt lacks variable %q", name)
		}
	}
}

func TestACheckCatchesAnUndeclaredVariable(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.tf"), []byte("variable \"a\" {\n  type = string\n}\n\noutput \"x\" {\n  value = \"${var.a}${var.b}\"\n}\n"), 0o644)
	m := load(t, dir)
	if _, ok := m.used["b"]; !ok {
		t.Fatal("var.b was not seen")
	}
	if _, ok := m.variables["b"]; ok {
		t.Fatal("var.b seen as declared")
	}
}
