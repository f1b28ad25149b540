package terraform

import (
	"fmt"
	"sort"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/loopstock/loopstock/platform/flatcar"
)

// The secrets module makes an accessor and a secret for every token the
// first server creates (flatcar.ConsulTokens), and a secret alone for the
// two management tokens: the same tokens as flatcar.GenerateSecrets.
func TestSecretsModuleMakesTheGoTokens(t *testing.T) {
	sets := map[string][]string{}
	for _, b := range resources(t, "modules/secrets", "random_uuid") {
		a, ok := b.Body.Attributes["for_each"]
		if !ok {
			t.Fatalf("random_uuid.%s has no for_each", b.Labels[1])
		}
		ctx := &hcl.EvalContext{Functions: map[string]function.Function{"toset": stdlib.MakeToFunc(cty.Set(cty.String))}}
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("random_uuid.%s: for_each: %s", b.Labels[1], diags.Error())
		}
		sets[b.Labels[1]] = stringSet(t, v)
	}
	goSecrets, err := flatcar.GenerateSecrets("dc1", []string{"10.0.0.10"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var withAccessor, all []string
	for name, tok := range goSecrets.Tokens {
		all = append(all, name)
		if tok.Accessor != "" {
			withAccessor = append(withAccessor, name)
		}
	}
	if got, want := sets["accessor"], sorted(flatcar.ConsulTokens); !equalLists(got, want) {
		t.Errorf("random_uuid.accessor makes %v, flatcar.ConsulTokens are %v", got, want)
	}
	if got, want := sets["accessor"], sorted(withAccessor); !equalLists(got, want) {
		t.Errorf("random_uuid.accessor makes %v, flatcar.GenerateSecrets gives accessors to %v", got, want)
	}
	if got, want := sets["secret"], sorted(all); !equalLists(got, want) {
		t.Errorf("random_uuid.secret makes %v, flatcar.GenerateSecrets makes %v", got, want)
	}
}

// The provision module copies to each host the files flatcar's
// Secrets.Files gives it (the Vagrant cluster and the cluster test deliver
// those): its locals are evaluated here with secrets made by Go.
func TestProvisionCopiesTheGoFiles(t *testing.T) {
	s, err := flatcar.GenerateSecrets("dc1", []string{"10.0.0.10", "10.0.0.11", "10.0.0.12"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]cty.Value{}
	for k, c := range s.Certs {
		certs[k] = cty.ObjectVal(map[string]cty.Value{"cert": cty.StringVal(c.Cert), "key": cty.StringVal(c.Key)})
	}
	tokens := map[string]cty.Value{}
	for k, tok := range s.Tokens {
		tokens[k] = cty.ObjectVal(map[string]cty.Value{"accessor": cty.StringVal(tok.Accessor), "secret": cty.StringVal(tok.Secret)})
	}
	vars := cty.ObjectVal(map[string]cty.Value{
		"server_hosts": cty.ListVal([]cty.Value{cty.StringVal("s0"), cty.StringVal("s1"), cty.StringVal("s2")}),
		"client_hosts": cty.ListVal([]cty.Value{cty.StringVal("c0"), cty.StringVal("c1")}),
		"secrets": cty.ObjectVal(map[string]cty.Value{
			"ca_cert": cty.StringVal(s.CA), "certs": cty.MapVal(certs),
			"consul_gossip_key": cty.StringVal(s.ConsulGossipKey), "nomad_gossip_key": cty.StringVal(s.NomadGossipKey),
			"tokens": cty.MapVal(tokens),
		}),
	})
	locals := map[string]hcl.Expression{}
	for _, b := range blocks(t, "modules/provision", "locals") {
		for name, a := range b.Body.Attributes {
			locals[name] = a.Expr
		}
	}
	// In the order they depend on each other; the install script and the
	// hosts are text made from these.
	evaluated := map[string]cty.Value{}
	for _, name := range []string{"s", "tokens", "common", "bootstrap_files", "server_files", "client_files"} {
		expr, ok := locals[name]
		if !ok {
			t.Fatalf("modules/provision has no local %q", name)
		}
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": vars, "local": cty.ObjectVal(evaluated)},
			Functions: map[string]function.Function{"merge": stdlib.MergeFunc},
		}
		v, diags := expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("local.%s: %s", name, diags.Error())
		}
		evaluated[name] = v
	}
	for _, host := range []struct {
		role  string
		index int
		files cty.Value
	}{
		{"server", 0, evaluated["server_files"].Index(cty.NumberIntVal(0))},
		{"server", 1, evaluated["server_files"].Index(cty.NumberIntVal(1))},
		{"server", 2, evaluated["server_files"].Index(cty.NumberIntVal(2))},
		{"client", 0, evaluated["client_files"].Index(cty.NumberIntVal(0))},
		{"client", 1, evaluated["client_files"].Index(cty.NumberIntVal(1))},
	} {
		tf := map[string]string{}
		for k, v := range host.files.AsValueMap() {
			tf[k] = v.AsString()
		}
		if d := differences(tf, s.Files(host.role, host.index)); d != "" {
			t.Errorf("%s %d: modules/provision's files differ from flatcar's Secrets.Files: %s", host.role, host.index, d)
		}
	}
}

// The jobs' tokens (those the first server creates and no host uses: not
// in a client's files) are outputs of every platform and example, marked
// sensitive, named <token>_consul_token.
func TestJobsTokensAreSensitiveOutputs(t *testing.T) {
	s, err := flatcar.GenerateSecrets("dc1", []string{"10.0.0.10"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	client := s.Files("client", 0)
	var jobs []string
	for _, n := range flatcar.ConsulTokens {
		if _, ok := client["consul-"+n+".token"]; !ok {
			jobs = append(jobs, n)
		}
	}
	if len(jobs) < 2 {
		t.Fatalf("jobs' tokens %v: the services' and Prometheus's at least", jobs)
	}
	for _, dir := range []string{"modules/aws", "modules/libvirt", "examples/aws", "examples/libvirt"} {
		sensitive := map[string]bool{}
		for _, b := range blocks(t, dir, "output") {
			if a, ok := b.Body.Attributes["sensitive"]; ok {
				v, _ := a.Expr.Value(nil)
				sensitive[b.Labels[0]] = v.Type() == cty.Bool && v.True()
			} else {
				sensitive[b.Labels[0]] = false
			}
		}
		for _, n := range jobs {
			out := n + "_consul_token"
			if sens, ok := sensitive[out]; !ok {
				t.Errorf("%s: no output %q", dir, out)
			} else if !sens {
				t.Errorf("%s: output %q is not sensitive", dir, out)
			}
		}
	}
}

// stringSet lists a set or tuple of strings, sorted.
func stringSet(t *testing.T, v cty.Value) []string {
	t.Helper()
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() != cty.String {
			t.Fatalf("%#v is not a string", e)
		}
		out = append(out, e.AsString())
	}
	sort.Strings(out)
	return out
}

func sorted(in []string) []string {
	out := append([]string{}, in...)
	sort.Strings(out)
	return out
}

func equalLists(a, b []string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// differences names the files one side has and the other lacks, and those
// whose contents differ (never the contents: they are secrets).
func differences(tf, goFiles map[string]string) string {
	var only, missing, differ []string
	for k, v := range tf {
		g, ok := goFiles[k]
		switch {
		case !ok:
			only = append(only, k)
		case g != v:
			differ = append(differ, k)
		}
	}
	for k := range goFiles {
		if _, ok := tf[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(only)+len(missing)+len(differ) == 0 {
		return ""
	}
	sort.Strings(only)
	sort.Strings(missing)
	sort.Strings(differ)
	return fmt.Sprintf("only in Terraform %v, only in Go %v, other contents %v", only, missing, differ)
}
