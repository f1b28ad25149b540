// Package monitoring checks the cluster's monitoring files in
// nomad/monitoring/ with the tools that read them: prometheus.yml
// (rendered as the Nomad template renders it) with `promtool check config`,
// rules.yml with `promtool check rules` and its unit tests, rules_test.yml,
// with `promtool test rules`, alertmanager.yml with `amtool check-config`;
// and, in Go, that every alert is tested firing and not firing, links to its
// runbook section in docs/operations.md and names metrics the services
// export, and that every query of the Grafana dashboard parses.
//
// promtool and amtool come from PATH (Debian's prometheus and
// prometheus-alertmanager, which make test installs). Without them the
// tests that run them skip, and one line says why.
package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const (
	dir        = "nomad/monitoring/"
	operations = "docs/operations.md"
)

var (
	promtool, amtool string
	missing          []string // tools not on PATH, with their Debian package
)

func TestMain(m *testing.M) {
	// The files are read from the checkout by their paths in it.
	if err := os.Chdir("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		promtool = p
	} else {
		missing = append(missing, "promtool (Debian's prometheus)")
	}
	if p, err := exec.LookPath("amtool"); err == nil {
		amtool = p
	} else {
		missing = append(missing, "amtool (Debian's prometheus-alertmanager)")
	}
	code := m.Run()
	if len(missing) > 0 {
		fmt.Printf("monitoring checks skipped: %s not on PATH: apt-get install prometheus prometheus-alertmanager\n",
			strings.Join(missing, " and "))
	}
	os.Exit(code)
}

// need skips the test when the tool is not on PATH.
func need(t *testing.T, path, name string) {
	t.Helper()
	if path == "" {
		t.Skipf("%s not on PATH", name)
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
