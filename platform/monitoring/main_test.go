// Package monitoring checks the cluster's monitoring files in
// nomad/monitoring/ with the tools that read them: prometheus.yml
// (rendered as the Nomad template renders it) with `promtool check config`,
// rules.yml with `promtool check rules` and its unit tests, rules_test.yml,
// with `promtool test rules`, alertmanager.yml with `amtool check-config`;
// and, in Go, that every alert is tested firing and not firing, links to its
// runbook section in docs/operations.md and names metrics the services
// export, and that every query of the Grafana dashboard parses.
//
// promtool and amtool are the ones make tools builds from the pinned
// Prometheus and Alertmanager modules (tools/monitoring, tools/alertmanager),
// found in $LOOPSTOCK_TOOLS, .bin/ or on PATH; promtool must be that version
// (PROMETHEUS_VERSION in the Makefile). Without them the tests that run them
// skip, and one line says why.
package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	dir        = "nomad/monitoring/"
	operations = "docs/operations.md"
)

var (
	promtool, amtool string
	missing          []string // tools not found, with how to get them
)

func TestMain(m *testing.M) {
	// The files are read from the checkout by their paths in it.
	if err := os.Chdir("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if promtool = findTool("promtool"); promtool == "" {
		missing = append(missing, "promtool is not in $LOOPSTOCK_TOOLS, .bin/ or on PATH (make tools)")
	}
	if amtool = findTool("amtool"); amtool == "" {
		missing = append(missing, "amtool is not in $LOOPSTOCK_TOOLS, .bin/ or on PATH (make tools)")
	}
	code := m.Run()
	if len(missing) > 0 {
		fmt.Printf("monitoring checks skipped: %s\n", strings.Join(missing, "; "))
	}
	os.Exit(code)
}

// findTool is name in $LOOPSTOCK_TOOLS, in the checkout's .bin/ or on PATH,
// in that order; "" when none has it.
func findTool(name string) string {
	for _, dir := range []string{os.Getenv("LOOPSTOCK_TOOLS"), ".bin"} {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			p, err := filepath.Abs(filepath.Join(dir, name))
			if err == nil {
				return p
			}
		}
	}
	p, _ := exec.LookPath(name)
	return p
}

// need skips the test when the tool was not found.
func need(t *testing.T, path, name string) {
	t.Helper()
	if path == "" {
		t.Skipf("%s not found", name)
	}
}

// run runs a tool and fails with its output when it exits non-zero.
func run(t *testing.T, what string, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: %s %s: %v\n%s", what, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
