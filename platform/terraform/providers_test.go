package terraform

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	version "github.com/hashicorp/go-version"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// validated are the provider versions `make test-terraform` runs the code
// with (the providers of the tools mirror: `tofu validate` on the examples,
// `tofu apply` of the Ignition module).
var validated = map[string]string{
	"poseidon/ct":       "0.14.0",
	"dmacvicar/libvirt": "0.7.6",
	"hashicorp/null":    "3.2.4",
	"hashicorp/tls":     "4.0.6",
	"hashicorp/random":  "3.6.3",
}

// unvalidated providers cannot be obtained where the tests run; their
// constraint is documented instead (docs/provisioning.md).
var unvalidated = map[string]bool{"hashicorp/aws": true}

// requiredProviders reads the required_providers of the module in dir:
// source → version constraint.
func requiredProviders(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
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
			if b.Type != "terraform" {
				continue
			}
			for _, rp := range b.Body.Blocks {
				if rp.Type != "required_providers" {
					continue
				}
				for name, a := range rp.Body.Attributes {
					v, diags := a.Expr.Value(nil)
					if diags.HasErrors() {
						t.Fatalf("%s: required_providers.%s: %v", f, name, diags)
					}
					src, cons := v.GetAttr("source").AsString(), v.GetAttr("version").AsString()
					out[src] = cons
				}
			}
		}
	}
	return out
}

// transitive is every provider the module in dir or a module it calls needs.
func transitive(t *testing.T, dir string, seen map[string]bool) map[string]bool {
	t.Helper()
	dir = filepath.Clean(dir)
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	all := map[string]bool{}
	for p := range requiredProviders(t, dir) {
		all[p] = true
	}
	for _, c := range load(t, dir).calls {
		for p := range transitive(t, filepath.Join(dir, c.source), seen) {
			all[p] = true
		}
	}
	return all
}

// A module may accept a range that holds the validated version; the
// platform modules (what a root, the examples' or a user's, calls) must
// narrow every provider of their whole tree to the validated release series:
// tofu intersects the constraints of every module, so no `tofu init` can then
// pick a version the code was never run with (random 3.5.x has no
// random_bytes, for one).
func TestProviderConstraintsAdmitOnlyValidatedVersions(t *testing.T) {
	for _, d := range dirs(t) {
		own := requiredProviders(t, d)
		for src, cons := range own {
			if unvalidated[src] {
				continue
			}
			want, ok := validated[src]
			if !ok {
				t.Errorf("%s: provider %s is not validated by make test-terraform (add it to the tools mirror)", d, src)
				continue
			}
			c, err := version.NewConstraint(cons)
			if err != nil {
				t.Errorf("%s: %s %q: %v", d, src, cons, err)
				continue
			}
			if !c.Check(version.Must(version.NewVersion(want))) {
				t.Errorf("%s: %s %q excludes the validated %s", d, src, cons, want)
			}
		}
		if d != "modules/aws" && d != "modules/libvirt" {
			continue
		}
		var need []string
		for p := range transitive(t, d, map[string]bool{}) {
			need = append(need, p)
		}
		sort.Strings(need)
		for _, src := range need {
			if unvalidated[src] {
				continue
			}
			if want := "~> " + validated[src]; own[src] != want {
				t.Errorf("%s: %s is constrained to %q here; want %q (the validated release series)", d, src, own[src], want)
			}
		}
	}
}

func TestAConstraintCheckCatchesAnOldMinor(t *testing.T) {
	c, _ := version.NewConstraint("~> 3.5")
	if !c.Check(version.Must(version.NewVersion("3.5.1"))) {
		t.Fatal("~> 3.5 should admit 3.5.1: the check is not the one tofu applies")
	}
	if c, _ := version.NewConstraint("~> 3.6.3"); c.Check(version.Must(version.NewVersion("3.5.1"))) {
		t.Fatal("~> 3.6.3 admits 3.5.1")
	}
}
