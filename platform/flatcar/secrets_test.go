package flatcar

import (
	"strings"
	"testing"
)

// The first server creates every Consul token with the accessor and secret
// generated for it, so it gets both of each; the other hosts get the
// secrets of the tokens they use, and no accessor.
func TestFirstServerGetsEveryTokenToCreate(t *testing.T) {
	s, err := GenerateSecrets("dc1", []string{"10.0.0.10", "10.0.0.11", "10.0.0.12"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	first := s.Files("server", 0)
	for _, n := range ConsulTokens {
		tok := s.Tokens[n]
		if tok.Accessor == "" || tok.Secret == "" || tok.Accessor == tok.Secret {
			t.Errorf("token %s: accessor %q, secret %q", n, tok.Accessor, tok.Secret)
		}
		for _, v := range []string{tok.Accessor, tok.Secret} {
			if other, ok := seen[v]; ok {
				t.Errorf("tokens %s and %s share the value %s", other, n, v)
			}
			seen[v] = n
		}
		if got := first["consul-"+n+".accessor"]; got != tok.Accessor {
			t.Errorf("first server: consul-%s.accessor is %q, want %q", n, got, tok.Accessor)
		}
		if got := first["consul-"+n+".token"]; got != tok.Secret {
			t.Errorf("first server: consul-%s.token is %q, want %q", n, got, tok.Secret)
		}
	}
	hostTokens := map[string]bool{"agent": true, "default": true, "nomad": true, "maintenance": true}
	for _, h := range []struct {
		role  string
		index int
	}{{"server", 1}, {"server", 2}, {"client", 0}, {"client", 1}} {
		files := s.Files(h.role, h.index)
		for name := range files {
			if strings.HasSuffix(name, ".accessor") {
				t.Errorf("%s %d gets %s: only the first server creates tokens", h.role, h.index, name)
			}
		}
		for _, n := range ConsulTokens {
			if _, ok := files["consul-"+n+".token"]; ok != hostTokens[n] {
				t.Errorf("%s %d: consul-%s.token delivered %t, want %t (the agents use only %v)", h.role, h.index, n, ok, hostTokens[n], hostTokens)
			}
		}
	}
}
