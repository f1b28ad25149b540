// Package ignition holds the Butane sources of the Flatcar hosts. These
// tests render each one the way Terraform's templatefile does, translate it
// with Butane in strict mode and validate the Ignition it gives: a warning
// fails as an error does.
package ignition

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	ignconfig "github.com/coreos/ignition/v2/config"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// exampleVars are what the Terraform modules pass (terraform/modules/*).
var exampleVars = map[string]cty.Value{
	"ssh_authorized_key":   cty.StringVal("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa user@example"),
	"ntp_servers":          cty.StringVal("0.flatcar.pool.ntp.org 1.flatcar.pool.ntp.org"),
	"flatcar_channel":      cty.StringVal("stable"),
	"datacenter":           cty.StringVal("dc1"),
	"server_count":         cty.NumberIntVal(3),
	"retry_join":           cty.StringVal(`["provider=aws tag_key=loopstock-cluster tag_value=demo"]`),
	"role":                 cty.StringVal("server"),
	"bootstrap":            cty.True,
	"consul_version":       cty.StringVal("1.20.2"),
	"nomad_version":        cty.StringVal("1.9.5"),
	"sysext_base_url":      cty.StringVal("https://sysext.example.org/releases"),
	"consul_sysext_sha256": cty.StringVal(strings.Repeat("ab", 32)),
	"nomad_sysext_sha256":  cty.StringVal(strings.Repeat("cd", 32)),
}

// Render is Terraform's templatefile: HCL template syntax over vars.
func Render(name string, src []byte, vars map[string]cty.Value) ([]byte, hcl.Diagnostics) {
	expr, diags := hclsyntax.ParseTemplate(src, name, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		return nil, diags
	}
	return []byte(v.AsString()), nil
}

// Check renders, translates (strict) and validates one Butane source.
func Check(name string, src []byte) error {
	rendered, diags := Render(name, src, exampleVars)
	if diags.HasErrors() {
		return diags
	}
	out, rep, err := config.TranslateBytes(rendered, common.TranslateBytesOptions{Pretty: true})
	if err != nil {
		return err
	}
	if len(rep.Entries) > 0 { // strict: warnings count
		return &reportError{rep.String()}
	}
	_, irep, err := ignconfig.Parse(out)
	if err != nil {
		return err
	}
	if len(irep.Entries) > 0 {
		return &reportError{irep.String()}
	}
	return nil
}

type reportError struct{ s string }

func (e *reportError) Error() string { return e.s }

func sources(t *testing.T) []string {
	files, _ := filepath.Glob("*.yaml")
	snippets, _ := filepath.Glob("snippets/*.yaml")
	all := append(files, snippets...)
	if len(files) < 2 || len(snippets) < 5 {
		t.Fatalf("butane sources: %v", all)
	}
	return all
}

func TestEveryButaneSourceTranslatesStrictlyAndValidates(t *testing.T) {
	for _, f := range sources(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{"server", "client"} {
			exampleVars["role"] = cty.StringVal(role)
			if err := Check(f, src); err != nil {
				t.Errorf("%s (role %s):\n%v", f, role, err)
			}
		}
	}
}

func TestAMisspeltKeyFails(t *testing.T) {
	src, _ := os.ReadFile("client.yaml")
	bad := bytes.Replace(src, []byte("    - path: /etc/docker/daemon.json\n      mode:"), []byte("    - path: /etc/docker/daemon.json\n      mdoe:"), 1)
	if bytes.Equal(bad, src) {
		t.Fatal("the test's edit did not apply")
	}
	if err := Check("client.yaml", bad); err == nil {
		t.Fatal("a misspelt Butane key was accepted")
	}
}

func TestNoGeneratedIgnitionIsCommitted(t *testing.T) {
	for _, pattern := range []string{"*.ign", "*.json", "snippets/*.ign", "snippets/*.json"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			t.Errorf("generated Ignition committed: %v (Terraform renders it with ct_config)", m)
		}
	}
}
