package terraform

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// parse reads every .tf file of dir.
func parse(t *testing.T, dir string) []*hclsyntax.Body {
	t.Helper()
	var out []*hclsyntax.Body
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	for _, f := range files {
		src, _ := os.ReadFile(f)
		file, diags := hclsyntax.ParseConfig(src, f, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		out = append(out, file.Body.(*hclsyntax.Body))
	}
	return out
}

// resources returns the resource blocks of the given type in dir.
func resources(t *testing.T, dir, typ string) []*hclsyntax.Block {
	t.Helper()
	var out []*hclsyntax.Block
	for _, b := range blocks(t, dir, "resource") {
		if b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

// ignoredChanges lists the attributes in the block's lifecycle.ignore_changes.
func ignoredChanges(b *hclsyntax.Block) map[string]bool {
	out := map[string]bool{}
	for _, lc := range b.Body.Blocks {
		if lc.Type != "lifecycle" {
			continue
		}
		if a, ok := lc.Body.Attributes["ignore_changes"]; ok {
			if tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
				for _, e := range tuple.Exprs {
					if tr, ok := e.(*hclsyntax.ScopeTraversalExpr); ok {
						out[tr.Traversal.RootName()] = true
					}
				}
			}
		}
	}
	return out
}

// An edited Butane config or a newer image must not replace every server in
// one apply (the Raft state of Consul and Nomad would go with them): hosts
// ignore both, and an operator replaces them one at a time (Typhoon's way;
// docs/provisioning.md).
func TestAConfigChangeReplacesNoHost(t *testing.T) {
	for _, c := range []struct{ dir, typ string }{
		{"modules/aws", "aws_instance"},
		{"modules/libvirt", "libvirt_domain"},
	} {
		blocks := resources(t, c.dir, c.typ)
		if len(blocks) != 2 {
			t.Fatalf("%s: %d %s resources, want the servers and the clients", c.dir, len(blocks), c.typ)
		}
		for _, b := range blocks {
			name := c.typ + "." + b.Labels[1]
			if a, ok := b.Body.Attributes["user_data_replace_on_change"]; ok {
				if v, _ := a.Expr.Value(nil); v.True() {
					t.Errorf("%s: user_data_replace_on_change = true replaces every host after any Butane edit", name)
				}
			}
			want := []string{"user_data", "ami"}
			if c.typ == "libvirt_domain" {
				want = []string{"coreos_ignition"}
			}
			ignored := ignoredChanges(b)
			for _, w := range want {
				if !ignored[w] {
					t.Errorf("%s: lifecycle.ignore_changes lacks %s", name, w)
				}
			}
		}
	}
}
