// Package flatcar turns the Butane sources in ignition/ into Ignition the
// way the Terraform modules do (templatefile, then Butane in strict mode,
// snippets merged into the role's config), for the CI checks and for the
// Vagrant cluster, so every path uses one set of sources.
package flatcar

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	ignconfig "github.com/coreos/ignition/v2/config"
	ign34 "github.com/coreos/ignition/v2/config/v3_4"
	ign34types "github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Snippets are the shared snippets every host gets, in order (the
// Terraform module ignition/ lists the same).
var Snippets = []string{"ssh", "time", "journald", "sysctl", "updates", "agents"}

// Render is Terraform's templatefile: HCL template syntax over vars.
func Render(name string, src []byte, vars map[string]cty.Value) ([]byte, error) {
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

// ReportError is a Butane or Ignition report with any entry: in strict
// mode a warning fails as an error does.
type ReportError struct {
	Name, Stage, Report string
}

func (e *ReportError) Error() string { return fmt.Sprintf("%s: %s:\n%s", e.Name, e.Stage, e.Report) }

// Translate turns Butane into Ignition JSON, strictly, and validates it.
func Translate(name string, butane []byte) ([]byte, error) {
	out, rep, err := config.TranslateBytes(butane, common.TranslateBytesOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: butane: %w", name, err)
	}
	if len(rep.Entries) > 0 {
		return nil, &ReportError{name, "butane (strict)", rep.String()}
	}
	if err := Validate(name, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Validate parses Ignition and fails on any report entry.
func Validate(name string, ign []byte) error {
	_, rep, err := ignconfig.Parse(ign)
	if err != nil {
		return fmt.Errorf("%s: ignition: %w", name, err)
	}
	if len(rep.Entries) > 0 {
		return &ReportError{name, "ignition", rep.String()}
	}
	return nil
}

// Node renders the role's config and the shared snippets from dir (the
// ignition/ folder) with vars, and merges them into one Ignition config
// exactly as Terraform's ct_config (poseidon/ct 0.14) does: each config is
// parsed as Ignition 3.4 (ParseCompatibleVersion upgrades Butane's 3.3) and
// each snippet merged into the result in order, so both paths give the same
// bytes (make test-terraform compares them).
func Node(dir, role string, vars map[string]cty.Value) ([]byte, error) {
	files := []string{role + ".yaml"}
	for _, s := range Snippets {
		files = append(files, filepath.Join("snippets", s+".yaml"))
	}
	var merged ign34types.Config
	for i, f := range files {
		src, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		rendered, err := Render(f, src, vars)
		if err != nil {
			return nil, err
		}
		out, err := Translate(f, rendered)
		if err != nil {
			return nil, err
		}
		cfg, _, err := ign34.ParseCompatibleVersion(out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if i == 0 {
			merged = cfg
		} else {
			merged = ign34.Merge(merged, cfg)
		}
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	return out, Validate(role, out)
}

// Stub is a config small enough for VirtualBox's 1 KiB limit that replaces
// itself with the full config at url.
func Stub(url string) []byte {
	return []byte(fmt.Sprintf(`{"ignition":{"version":"3.3.0","config":{"replace":{"source":%q}}}}`, url))
}
