package monitoring

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// pinnedVersion is PROMETHEUS_VERSION in the Makefile: the version make
// tools builds prometheus and promtool with.
func pinnedVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^PROMETHEUS_VERSION\s*:=\s*(\S+)\s*$`).FindSubmatch(read(t, "Makefile"))
	if m == nil {
		t.Fatal("Makefile: no PROMETHEUS_VERSION := line")
	}
	return string(m[1])
}

// moduleVersion is the Prometheus version of the github.com/prometheus/prometheus
// module a go.mod requires: module v0.XYY.Z is Prometheus X.YY.Z.
func moduleVersion(t *testing.T, gomod string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/prometheus/prometheus v0\.(\d)(\d{2})\.(\d+)\b`).FindSubmatch(read(t, gomod))
	if m == nil {
		t.Fatalf("%s does not require github.com/prometheus/prometheus v0.XYY.Z", gomod)
	}
	minor, _ := strconv.Atoi(string(m[2]))
	return fmt.Sprintf("%s.%d.%s", m[1], minor, m[3])
}

// One Prometheus version across the checkout: the Makefile's, the module
// tools/monitoring builds, the module these tests parse PromQL with, and
// every "Prometheus X.Y[.Z]" or "prometheus-X.Y.Z" the job, the Makefile and
// the docs name (the monitoring job's release tarball among them).
func TestPrometheusVersionIsOne(t *testing.T) {
	want := pinnedVersion(t)
	for _, gomod := range []string{"tools/monitoring/go.mod", "platform/go.mod"} {
		if got := moduleVersion(t, gomod); got != want {
			t.Errorf("%s requires Prometheus %s; the Makefile's PROMETHEUS_VERSION is %s", gomod, got, want)
		}
	}
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`(?i)\bprometheus[ -](\d+\.\d+(?:\.\d+)?)\b`)
	jobNames := 0
	for _, f := range append([]string{"nomad/monitoring.nomad.hcl", "Makefile", "README.md", "nomad/README.md"}, docs...) {
		for i, line := range strings.Split(string(read(t, f)), "\n") {
			for _, m := range named.FindAllStringSubmatch(line, -1) {
				if v := m[1]; v != want && !(strings.Count(v, ".") == 1 && strings.HasPrefix(want, v+".")) {
					t.Errorf("%s:%d names %q; the pinned Prometheus is %s", f, i+1, m[0], want)
				}
				if f == "nomad/monitoring.nomad.hcl" && strings.HasPrefix(strings.ToLower(m[0]), "prometheus-") {
					jobNames++
				}
			}
		}
	}
	if jobNames == 0 {
		t.Errorf("nomad/monitoring.nomad.hcl names no prometheus-X.Y.Z release; want prometheus-%s", want)
	}
}

// The promtool these tests run is the pinned one (make tools rebuilds it
// when tools/monitoring changes).
func TestPromtoolIsThePinnedVersion(t *testing.T) {
	need(t, promtool, "promtool")
	want := pinnedVersion(t)
	out, err := exec.Command(promtool, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", promtool, err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if !strings.HasPrefix(first, "promtool, version "+want+" ") {
		t.Errorf("%s --version says %q; want version %s (make tools builds it)", promtool, first, want)
	}
}
