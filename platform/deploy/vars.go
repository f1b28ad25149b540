// Package deploy submits the job files in nomad/ to a Nomad cluster (or to
// dev agents it starts on 127.0.0.1) through Nomad's and Consul's own API
// clients, follows each job's evaluation and deployment, and tells when
// the whole stack is running and healthy. platform/cmd/nomad-run is its
// command; the dev-agent and cluster tests use the same functions.
package deploy

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// Declared returns the variables a job file declares: name → the source
// text of its type ("string", "map(number)"; "" when it declares none).
func Declared(filename string, src []byte) (map[string]string, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	out := map[string]string{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "variable" || len(b.Labels) != 1 {
			continue
		}
		typ := ""
		if a, ok := b.Body.Attributes["type"]; ok {
			typ = strings.TrimSpace(string(a.Expr.Range().SliceBytes(src)))
		}
		out[b.Labels[0]] = typ
	}
	return out, nil
}

// Assignments reads a var file: name → the source text of its value.
func Assignments(filename string, src []byte) (map[string]string, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	body := f.Body.(*hclsyntax.Body)
	if len(body.Blocks) > 0 {
		b := body.Blocks[0]
		return nil, fmt.Errorf("%s: a var file holds only assignments (name = value), not a %q block", b.DefRange().String(), b.Type)
	}
	out := map[string]string{}
	for name, a := range body.Attributes {
		out[name] = string(a.Expr.Range().SliceBytes(src))
	}
	return out, nil
}

// JobVariables is what one job receives, as the text of a var file: the
// target's shared var file (sharedFile, "" for none) filtered to the
// variables the job declares, then NOMAD_VAR_<name> from env, then
// overrides; a later source wins. Nomad refuses a var file that sets a
// variable the job does not declare, which is why one shared file cannot
// be handed to every job as it is. A value from env or overrides follows
// Nomad's rule for NOMAD_VAR_*: a string variable takes the text as it is,
// any other type reads it as an HCL expression.
func JobVariables(jobFile, sharedFile string, env []string, overrides map[string]string) (string, error) {
	src, err := os.ReadFile(jobFile)
	if err != nil {
		return "", err
	}
	declared, err := Declared(jobFile, src)
	if err != nil {
		return "", err
	}
	values := map[string]string{} // name → HCL expression text
	if sharedFile != "" {
		shared, err := os.ReadFile(sharedFile)
		if err != nil {
			return "", err
		}
		assigned, err := Assignments(sharedFile, shared)
		if err != nil {
			return "", err
		}
		for name, expr := range assigned {
			if _, ok := declared[name]; ok {
				values[name] = expr
			}
		}
	}
	set := func(source, name, text string) error {
		typ, ok := declared[name]
		if !ok {
			return nil
		}
		if typ == "string" {
			values[name] = string(hclwrite.TokensForValue(cty.StringVal(text)).Bytes())
			return nil
		}
		if _, diags := hclsyntax.ParseExpression([]byte(text), source, hcl.Pos{Line: 1, Column: 1}); diags.HasErrors() {
			return fmt.Errorf("%s: %q is not a value of type %s: %s", source, text, typ, diags.Error())
		}
		values[name] = text
		return nil
	}
	for _, kv := range env {
		name, text, ok := strings.Cut(kv, "=")
		if name, isVar := strings.CutPrefix(name, "NOMAD_VAR_"); ok && isVar {
			if err := set("NOMAD_VAR_"+name, name, text); err != nil {
				return "", err
			}
		}
	}
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := set(name, name, overrides[name]); err != nil {
			return "", err
		}
	}
	names = names[:0]
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s = %s\n", name, values[name])
	}
	return b.String(), nil
}

// Unused lists the settings of a shared var file that no job declares: a
// misspelt name there would otherwise be dropped without a word.
func Unused(sharedFile string, jobFiles []string) ([]string, error) {
	shared, err := os.ReadFile(sharedFile)
	if err != nil {
		return nil, err
	}
	assigned, err := Assignments(sharedFile, shared)
	if err != nil {
		return nil, err
	}
	for _, f := range jobFiles {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		declared, err := Declared(f, src)
		if err != nil {
			return nil, err
		}
		for name := range declared {
			delete(assigned, name)
		}
	}
	var out []string
	for name := range assigned {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}
