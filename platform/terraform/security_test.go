package terraform

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The AWS security groups open the ports the jobs use (nomad/*.nomad.hcl)
// between the hosts that use them, and nothing more:
//
//	Redis 6379 on the clients         from the clients and the servers (Sentinels)
//	Sentinel 26379 on the servers     from the clients and the servers
//	Nomad's dynamic ports on clients  from the clients only; servers run no dynamic port
//	                                  (26379, in the range, is the Sentinels' static port)
//	agents' ports                     between every host, as before
//	from outside the cluster          var.ssh_cidrs only, to SSH and the two HTTPS APIs
//
// The rules are read from the module's HCL (the AWS provider is not at
// hand for a `tofu plan`): inline ingress blocks, aws_security_group_rule
// and aws_vpc_security_group_ingress_rule, and the groups each aws_instance
// carries (the instance's label, server or client, is its role).
func TestSecurityGroupsOpenOnlyWhatTheJobsUse(t *testing.T) {
	for _, p := range securityProblems(t, "modules/aws") {
		t.Error(p)
	}
}

// The check sees the single group of old, which opened the dynamic ports
// between every host and neither Redis nor the Sentinels.
func TestASecurityCheckCatchesOneGroupForAll(t *testing.T) {
	dir := t.TempDir()
	tf := `resource "aws_security_group" "cluster" {
  ingress {
    protocol    = "tcp"
    from_port   = 22
    to_port     = 22
    cidr_blocks = ["0.0.0.0/0"]
  }
  ingress {
    protocol  = "tcp"
    from_port = 20000
    to_port   = 32000
    self      = true
  }
}

resource "aws_instance" "server" {
  vpc_security_group_ids = [aws_security_group.cluster.id]
}

resource "aws_instance" "client" {
  vpc_security_group_ids = [aws_security_group.cluster.id]
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tf), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(securityProblems(t, dir), "\n")
	for _, want := range []string{"0.0.0.0/0", "dynamic ports to the servers", "dynamic ports from the servers",
		"tcp/6379 on the clients", "tcp/8300 on the servers"} {
		if !strings.Contains(got, want) {
			t.Errorf("the check misses %q; it found:\n%s", want, got)
		}
	}
}

var roles = []string{"server", "client"}

// ingressRule is one source of one rule.
type ingressRule struct {
	at       hcl.Range
	group    string // the security group the rule is in
	proto    string // tcp, udp, all, or another protocol as written
	from, to int
	source   string // a security group (by resource name), or "" for addresses
	cidr     string // the addresses, as written, when source is ""
	sshCIDRs bool   // the addresses are var.ssh_cidrs
}

func (r ingressRule) covers(proto string, port int) bool {
	return (r.proto == "all" || r.proto == proto) && r.from <= port && port <= r.to
}

type securityModel struct {
	groups   map[string]bool
	attached map[string]map[string]bool // group → roles whose instances carry it
	rules    []ingressRule
	problems []string
}

func (m *securityModel) errorf(rng hcl.Range, format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf("%s: %s", rng, fmt.Sprintf(format, args...)))
}

// groupRef names the group of an `aws_security_group.NAME.id` expression.
func groupRef(e hclsyntax.Expression) (string, bool) {
	tr, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok || len(tr.Traversal) != 3 || tr.Traversal.RootName() != "aws_security_group" {
		return "", false
	}
	name, ok1 := tr.Traversal[1].(hcl.TraverseAttr)
	id, ok2 := tr.Traversal[2].(hcl.TraverseAttr)
	if !ok1 || !ok2 || id.Name != "id" {
		return "", false
	}
	return name.Name, true
}

// groupRefs reads an attribute that holds one group reference or a list of them.
func (m *securityModel) groupRefs(b *hclsyntax.Body, attr string) []string {
	a, ok := b.Attributes[attr]
	if !ok {
		return nil
	}
	exprs := []hclsyntax.Expression{a.Expr}
	if tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		exprs = tuple.Exprs
	}
	var out []string
	for _, e := range exprs {
		if g, ok := groupRef(e); ok {
			out = append(out, g)
		} else {
			m.errorf(e.Range(), "%s: not a reference to an aws_security_group's id; the check cannot follow it", attr)
		}
	}
	return out
}

func (m *securityModel) intAttr(b *hclsyntax.Body, name string) (int, bool) {
	a, ok := b.Attributes[name]
	if !ok {
		return 0, false
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.Number {
		m.errorf(a.SrcRange, "%s is not a literal number; the check cannot read it", name)
		return 0, false
	}
	i, _ := v.AsBigFloat().Int64()
	return int(i), true
}

func (m *securityModel) strAttr(b *hclsyntax.Body, name string) (string, bool) {
	a, ok := b.Attributes[name]
	if !ok {
		return "", false
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String {
		m.errorf(a.SrcRange, "%s is not a literal string; the check cannot read it", name)
		return "", false
	}
	return v.AsString(), true
}

// ports reads the protocol and port range of a rule body.
func (m *securityModel) ports(b *hclsyntax.Body, protoAttr string, rng hcl.Range) (string, int, int) {
	proto, ok := m.strAttr(b, protoAttr)
	if !ok {
		m.errorf(rng, "no %s", protoAttr)
	}
	switch strings.ToLower(proto) {
	case "-1", "all":
		return "all", 0, 65535
	case "6":
		proto = "tcp"
	case "17":
		proto = "udp"
	}
	from, ok1 := m.intAttr(b, "from_port")
	to, ok2 := m.intAttr(b, "to_port")
	if !ok1 || !ok2 {
		m.errorf(rng, "no from_port and to_port")
	}
	return strings.ToLower(proto), from, to
}

// isSSHCIDRs: the expression is var.ssh_cidrs, or each.value/each.key of a
// resource whose for_each is made of var.ssh_cidrs.
func isSSHCIDRs(e hclsyntax.Expression, forEach hclsyntax.Expression) bool {
	vars := e.Variables()
	if len(vars) == 0 {
		return false
	}
	for _, tr := range vars {
		switch {
		case tr.RootName() == "var" && len(tr) > 1 && attrName(tr[1]) == "ssh_cidrs":
		case tr.RootName() == "each" && forEach != nil && isSSHCIDRs(forEach, nil):
		default:
			return false
		}
	}
	return true
}

func attrName(s hcl.Traverser) string {
	if a, ok := s.(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

// addSources records a rule's sources: groups and addresses.
func (m *securityModel) addSources(r ingressRule, b *hclsyntax.Body, groupAttrs, cidrAttrs []string, forEach hclsyntax.Expression) {
	n := 0
	if a, ok := b.Attributes["self"]; ok {
		if v, diags := a.Expr.Value(nil); diags.HasErrors() || v.Type() != cty.Bool {
			m.errorf(a.SrcRange, "self is not a literal bool; the check cannot read it")
		} else if v.True() {
			s := r
			s.source = r.group
			m.rules = append(m.rules, s)
			n++
		}
	}
	for _, attr := range groupAttrs {
		for _, g := range m.groupRefs(b, attr) {
			s := r
			s.source = g
			m.rules = append(m.rules, s)
			n++
		}
	}
	for _, attr := range cidrAttrs {
		if a, ok := b.Attributes[attr]; ok {
			s := r
			s.cidr = exprText(a.Expr)
			s.sshCIDRs = isSSHCIDRs(a.Expr, forEach)
			m.rules = append(m.rules, s)
			n++
		}
	}
	if n == 0 {
		m.errorf(r.at, "an ingress rule without a source the check knows")
	}
}

// exprText is the expression as written.
func exprText(e hclsyntax.Expression) string {
	src, _ := os.ReadFile(e.Range().Filename)
	return string(e.Range().SliceBytes(src))
}

func loadSecurity(t *testing.T, dir string) *securityModel {
	t.Helper()
	m := &securityModel{groups: map[string]bool{}, attached: map[string]map[string]bool{}}
	for _, b := range blocks(t, dir, "resource") {
		typ, name, body := b.Labels[0], b.Labels[1], b.Body
		var forEach hclsyntax.Expression
		if a, ok := body.Attributes["for_each"]; ok {
			forEach = a.Expr
		}
		switch typ {
		case "aws_security_group":
			m.groups[name] = true
			for _, in := range body.Blocks {
				if in.Type != "ingress" {
					continue
				}
				r := ingressRule{at: in.DefRange(), group: name}
				r.proto, r.from, r.to = m.ports(in.Body, "protocol", in.DefRange())
				m.addSources(r, in.Body, []string{"security_groups"}, []string{"cidr_blocks", "ipv6_cidr_blocks", "prefix_list_ids"}, nil)
			}
		case "aws_security_group_rule":
			if kind, _ := m.strAttr(body, "type"); kind != "ingress" {
				continue
			}
			groups := m.groupRefs(body, "security_group_id")
			if len(groups) != 1 {
				m.errorf(b.DefRange(), "%s.%s: no security_group_id", typ, name)
				continue
			}
			r := ingressRule{at: b.DefRange(), group: groups[0]}
			r.proto, r.from, r.to = m.ports(body, "protocol", b.DefRange())
			m.addSources(r, body, []string{"source_security_group_id"}, []string{"cidr_blocks", "ipv6_cidr_blocks", "prefix_list_ids"}, forEach)
		case "aws_vpc_security_group_ingress_rule":
			groups := m.groupRefs(body, "security_group_id")
			if len(groups) != 1 {
				m.errorf(b.DefRange(), "%s.%s: no security_group_id", typ, name)
				continue
			}
			r := ingressRule{at: b.DefRange(), group: groups[0]}
			r.proto, r.from, r.to = m.ports(body, "ip_protocol", b.DefRange())
			m.addSources(r, body, []string{"referenced_security_group_id"}, []string{"cidr_ipv4", "cidr_ipv6", "prefix_list_id"}, forEach)
		case "aws_instance":
			role := name
			if role != "server" && role != "client" {
				m.errorf(b.DefRange(), "aws_instance.%s: neither the servers nor the clients; the check knows no role for it", name)
				continue
			}
			if _, ok := body.Attributes["security_groups"]; ok {
				m.errorf(b.DefRange(), "aws_instance.%s: security_groups; the check reads vpc_security_group_ids", name)
			}
			for _, g := range m.groupRefs(body, "vpc_security_group_ids") {
				if m.attached[g] == nil {
					m.attached[g] = map[string]bool{}
				}
				m.attached[g][role] = true
			}
		}
	}
	for _, r := range m.rules {
		for _, g := range []string{r.group, r.source} {
			if g != "" && !m.groups[g] {
				m.errorf(r.at, "aws_security_group.%s is not a resource of this module", g)
			}
		}
	}
	return m
}

// from is what may connect to proto/port on a host of the role: the roles
// of the cluster, and the address blocks (as written).
func (m *securityModel) from(role, proto string, port int) (map[string]bool, []ingressRule) {
	roles := map[string]bool{}
	var cidrs []ingressRule
	for _, r := range m.rules {
		if !m.attached[r.group][role] || !r.covers(proto, port) {
			continue
		}
		if r.source == "" {
			cidrs = append(cidrs, r)
			continue
		}
		for src := range m.attached[r.source] {
			roles[src] = true
		}
	}
	return roles, cidrs
}

func roleList(set map[string]bool) string {
	var out []string
	for r := range set {
		out = append(out, r+"s")
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, " and ")
}

func securityProblems(t *testing.T, dir string) []string {
	t.Helper()
	m := loadSecurity(t, dir)
	if len(m.attached) == 0 {
		m.problems = append(m.problems, dir+": no aws_instance carries a security group")
	}
	const dynFrom, dynTo, sentinelPort = 20000, 32000, 26379
	operatorPorts := map[int]bool{22: true, 8501: true, 4646: true}

	for _, r := range m.rules {
		if r.source == "" {
			if !r.sshCIDRs {
				m.errorf(r.at, "ingress from %s: the only addresses outside the cluster are var.ssh_cidrs", r.cidr)
			}
			if r.proto != "tcp" || r.from != r.to || !operatorPorts[r.from] {
				m.errorf(r.at, "ingress from %s to %s/%d-%d: operators get SSH (22) and the HTTPS APIs (8501, 4646) only", r.cidr, r.proto, r.from, r.to)
			}
			continue
		}
		if (r.proto != "all" && r.proto != "tcp" && r.proto != "udp") || r.to < dynFrom || r.from > dynTo {
			continue
		}
		// The Sentinels' static port, within the range: the matrix below
		// says who may reach it.
		if r.proto == "tcp" && r.from == sentinelPort && r.to == sentinelPort {
			continue
		}
		if m.attached[r.group]["server"] {
			m.errorf(r.at, "opens Nomad's dynamic ports to the servers (%s/%d-%d in group %s): no job of theirs uses one", r.proto, r.from, r.to, r.group)
		}
		if m.attached[r.source]["server"] {
			m.errorf(r.at, "opens Nomad's dynamic ports from the servers (%s/%d-%d from group %s): only clients reach the clients' tasks", r.proto, r.from, r.to, r.source)
		}
	}

	// exactly: port → role → the roles that must reach it, and no others.
	type want struct {
		proto string
		port  int
		on    string
		from  map[string]bool
	}
	both := map[string]bool{"server": true, "client": true}
	none := map[string]bool{}
	for _, w := range []want{
		{"tcp", 6379, "client", both}, // Redis: integer-api, replication, the start script; the Sentinels
		{"tcp", 6379, "server", none},
		{"tcp", 26379, "server", both},                            // Sentinel: integer-api, the start script; the other Sentinels
		{"tcp", 26379, "client", map[string]bool{"client": true}}, // a dynamic port there
	} {
		got, cidrs := m.from(w.on, w.proto, w.port)
		if roleList(got) != roleList(w.from) || len(cidrs) > 0 {
			extra := ""
			if len(cidrs) > 0 {
				extra = " and " + cidrs[0].cidr
			}
			m.problems = append(m.problems, fmt.Sprintf("%s: %s/%d on the %ss is open from %s%s; want from %s",
				dir, w.proto, w.port, w.on, roleList(got), extra, roleList(w.from)))
		}
	}

	// at least: the agents' ports between every host, and the dynamic ports
	// between clients, all of the range.
	agents := map[string][]int{"tcp": {8300, 8301, 8501, 8502, 8503, 4646, 4647, 4648}, "udp": {8301, 4648}}
	for _, proto := range []string{"tcp", "udp"} {
		for _, port := range agents[proto] {
			for _, on := range roles {
				if got, _ := m.from(on, proto, port); roleList(got) != roleList(both) {
					m.problems = append(m.problems, fmt.Sprintf("%s: %s/%d on the %ss is open from %s; the agents need it from every host",
						dir, proto, port, on, roleList(got)))
				}
			}
		}
	}
	for port := dynFrom; port <= dynTo; port++ {
		if got, _ := m.from("client", "tcp", port); !got["client"] {
			m.problems = append(m.problems, fmt.Sprintf("%s: tcp/%d (a Nomad dynamic port) on the clients is closed to the clients", dir, port))
			break
		}
	}
	return m.problems
}
