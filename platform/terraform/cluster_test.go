package terraform

import (
	"sort"
	"testing"

	"github.com/loopstock/loopstock/platform/flatcar"
)

// modules/ignition takes exactly the inputs flatcar.Cluster holds (its
// template variables, less the per-host role and bootstrap, plus the extra
// snippets), so the Go renderers and Terraform cannot drift apart.
func TestIgnitionModuleTakesTheClusterInputs(t *testing.T) {
	m := load(t, "modules/ignition")
	want := map[string]bool{"snippets": true}
	for k := range (flatcar.Cluster{}).Vars("client", false) {
		if k != "role" && k != "bootstrap" {
			want[k] = true
		}
	}
	var missing, extra []string
	for k := range want {
		if _, ok := m.variables[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range m.variables {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("modules/ignition variables differ from flatcar.Cluster: missing %v, not in Cluster %v", missing, extra)
	}
}
