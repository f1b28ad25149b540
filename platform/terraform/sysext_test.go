package terraform

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The sysext pins: no placeholder hash anywhere (Ignition would refuse the
// image at boot), and the platforms' default versions are the Makefile's
// (the Vagrant cluster's), so every path installs the same images.
func TestSysextPinsAreRealAndAgree(t *testing.T) {
	zeros := regexp.MustCompile(`"0{64}"`)
	files, _ := filepath.Glob("*/*/*.tf")
	if len(files) == 0 {
		t.Fatal("no .tf files")
	}
	for _, f := range files {
		src, _ := os.ReadFile(f)
		if zeros.Match(src) {
			t.Errorf("%s: an all-zero SHA-256: take the image's line of the bakery's SHA256SUMS", f)
		}
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []struct{ variable, makeVar string }{{"consul_version", "CONSUL_VERSION"}, {"nomad_version", "NOMAD_VERSION"}} {
		m := regexp.MustCompile(`(?m)^` + pin.makeVar + `\s*\?=\s*(\S+)$`).FindSubmatch(makefile)
		if m == nil {
			t.Fatalf("the Makefile pins no %s", pin.makeVar)
		}
		for _, dir := range []string{"modules/aws", "modules/libvirt"} {
			for _, b := range blocks(t, dir, "variable") {
				if b.Labels[0] != pin.variable {
					continue
				}
				v, _ := b.Body.Attributes["default"].Expr.Value(nil)
				if v.AsString() != string(m[1]) {
					t.Errorf("%s: %s defaults to %s, the Makefile pins %s", dir, pin.variable, v.AsString(), m[1])
				}
			}
		}
	}
}

// blocks returns the blocks of the given type in dir's .tf files.
func blocks(t *testing.T, dir, typ string) []*hclsyntax.Block {
	t.Helper()
	var out []*hclsyntax.Block
	for _, f := range parse(t, dir) {
		for _, b := range f.Blocks {
			if b.Type == typ {
				out = append(out, b)
			}
		}
	}
	return out
}
