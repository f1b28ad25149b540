package ignition

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/loopstock/loopstock/platform/flatcar"
)

// The first server's ACL bootstrap creates every token flatcar.ConsulTokens
// names (the tokens whose accessors and secrets are generated and
// delivered), each with a policy file of its name that Consul can parse.
func TestACLBootstrapCreatesEveryConsulToken(t *testing.T) {
	out, err := flatcar.Node(".", "server", exampleVars("server"))
	if err != nil {
		t.Fatal(err)
	}
	files := fileContents(t, out)
	script, ok := files["/opt/bin/loopstock-acl-bootstrap"]
	if !ok {
		t.Fatal("the server config has no /opt/bin/loopstock-acl-bootstrap")
	}
	m := regexp.MustCompile(`(?m)^\s*for name in ([a-z ]+); do\n\s*consul acl policy`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no `for name in …; do consul acl policy …` loop in the bootstrap script:\n%s", script)
	}
	created, want := strings.Fields(m[1]), append([]string{}, flatcar.ConsulTokens...)
	sort.Strings(created)
	sort.Strings(want)
	if strings.Join(created, " ") != strings.Join(want, " ") {
		t.Errorf("the bootstrap creates %v, flatcar.ConsulTokens are %v", created, want)
	}
	for _, n := range flatcar.ConsulTokens {
		p := "/etc/loopstock/acl/consul-" + n + ".hcl"
		policy, ok := files[p]
		if !ok || strings.TrimSpace(policy) == "" {
			t.Errorf("token %s: no policy %s", n, p)
			continue
		}
		if _, diags := hclsyntax.ParseConfig([]byte(policy), p, hcl.Pos{Line: 1, Column: 1}); diags.HasErrors() {
			t.Errorf("%s: %s", p, diags.Error())
		}
	}
}

// Prometheus's token reads what its consul_sd_configs asks for (the
// catalog's services and their health, /v1/agent/self for the datacenter)
// and nothing else.
func TestPrometheusPolicyOnlyReadsTheCatalog(t *testing.T) {
	out, err := flatcar.Node(".", "server", exampleVars("server"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.Split(fileContents(t, out)["/etc/loopstock/acl/consul-prometheus.hcl"], "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, line)
		}
	}
	sort.Strings(rules)
	want := []string{
		`agent_prefix "" { policy = "read" }`,
		`node_prefix "" { policy = "read" }`,
		`service_prefix "" { policy = "read" }`,
	}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Errorf("the prometheus policy is\n%s\nwant exactly\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
}
