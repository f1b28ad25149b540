package monitoring

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/loopstock/loopstock/platform/metricnames"
)

const runbookPrefix = "https://github.com/loopstock/loopstock/blob/main/docs/operations.md#"

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(read(t, dir+"rules.yml"), &f); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("rules.yml has no rules")
	}
	return rules
}

func TestRulesPassPromtoolCheck(t *testing.T) {
	need(t, promtool, "promtool")
	run(t, "rules.yml", promtool, "check", "rules", "--lint=all", "--lint-fatal", dir+"rules.yml")
}

func TestRulesUnitTests(t *testing.T) {
	need(t, promtool, "promtool")
	run(t, "rules_test.yml", promtool, "test", "rules", dir+"rules_test.yml")
}

// rules_test.yml has one test per alert, named after it, whose evaluations
// show the alert firing at one time and not firing at another.
func TestEveryAlertTestedFiringAndNot(t *testing.T) {
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name        string `yaml:"name"`
			InputSeries []struct {
				Series string `yaml:"series"`
				Values string `yaml:"values"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				EvalTime  string `yaml:"eval_time"`
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(read(t, dir+"rules_test.yml"), &f); err != nil {
		t.Fatalf("rules_test.yml: %v", err)
	}
	if !slices.Equal(f.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("rules_test.yml tests %v, want [rules.yml]", f.RuleFiles)
	}
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert != "" {
			alerts[r.Alert] = true
		}
	}
	tested := map[string]int{}
	for i, tc := range f.Tests {
		where := fmt.Sprintf("rules_test.yml, test %d (%q)", i+1, tc.Name)
		if !alerts[tc.Name] {
			t.Errorf("%s: not named after an alert of rules.yml", where)
			continue
		}
		tested[tc.Name]++
		fires, quiet := false, false
		for _, a := range tc.AlertRuleTest {
			if a.Alertname != tc.Name {
				t.Errorf("%s: at %s it checks %s; a test checks its own alert", where, a.EvalTime, a.Alertname)
				continue
			}
			fires = fires || len(a.ExpAlerts) > 0
			quiet = quiet || len(a.ExpAlerts) == 0
		}
		if !fires {
			t.Errorf("%s: %s never expected to fire", where, tc.Name)
		}
		if !quiet {
			t.Errorf("%s: %s never expected not to fire", where, tc.Name)
		}
		// A target Consul dropped vanishes rather than reading 0.
		if tc.Name == "LoopstockInstancesBelowMinimum" && !slices.ContainsFunc(tc.InputSeries, func(s struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		}) bool {
			return strings.HasPrefix(s.Series, "up{") && strings.Contains(s.Values, "stale")
		}) {
			t.Errorf("%s: no up series vanishes (stale)", where)
		}
	}
	for a := range alerts {
		if tested[a] != 1 {
			t.Errorf("alert %s has %d tests in rules_test.yml, want 1", a, tested[a])
		}
	}
}

// Every alert says how bad it is, what it means, and where its runbook
// section is: a section of docs/operations.md of its own, with a symptom,
// a way to confirm and a fix.
func TestAlertsLinkTheirRunbookSection(t *testing.T) {
	sections := runbookSections(string(read(t, operations)))
	linked := map[string]string{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			t.Errorf("rules.yml: recording rule %s: the file holds alerts only", r.Record)
			continue
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s", r.Alert, a)
			}
		}
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, runbookPrefix)
		if !ok {
			t.Errorf("alert %s: runbook_url %q does not start with %s", r.Alert, url, runbookPrefix)
			continue
		}
		body, ok := sections[anchor]
		if !ok {
			t.Errorf("alert %s: runbook_url's anchor #%s is no heading of %s", r.Alert, anchor, operations)
			continue
		}
		if other, dup := linked[anchor]; dup {
			t.Errorf("alerts %s and %s link the same section #%s", other, r.Alert, anchor)
		}
		linked[anchor] = r.Alert
		for _, part := range []string{"**Symptom:**", "**Confirm:**", "**Fix:**"} {
			if !strings.Contains(body, part) {
				t.Errorf("alert %s: section #%s of %s has no %s", r.Alert, anchor, operations, part)
			}
		}
	}
}

var (
	heading  = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*#*\s*$`)
	mdLink   = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	notInTag = regexp.MustCompile(`<[^>]+>`)
)

// runbookSections maps the anchor GitHub gives each heading of a Markdown
// document to the text under it, down to the next heading of its level or
// above. GitHub's anchors: the heading's text lowercased, punctuation
// removed except - and _, spaces made -, and -1, -2, … on repeats.
func runbookSections(doc string) map[string]string {
	type open struct {
		anchor string
		level  int
		body   strings.Builder
	}
	sections, seen := map[string]string{}, map[string]int{}
	var stack []*open
	closeTo := func(level int) {
		for len(stack) > 0 && stack[len(stack)-1].level >= level {
			s := stack[len(stack)-1]
			sections[s.anchor] = s.body.String()
			stack = stack[:len(stack)-1]
		}
	}
	fence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
		}
		if m := heading.FindStringSubmatch(line); m != nil && !fence {
			closeTo(len(m[1]))
			a := slug(m[2])
			if n := seen[a]; n > 0 {
				seen[a] = n + 1
				a = fmt.Sprintf("%s-%d", a, n)
			} else {
				seen[a] = 1
			}
			stack = append(stack, &open{anchor: a, level: len(m[1])})
			continue
		}
		for _, s := range stack {
			s.body.WriteString(line + "\n")
		}
	}
	closeTo(1)
	return sections
}

func slug(text string) string {
	text = notInTag.ReplaceAllString(mdLink.ReplaceAllString(text, "$1"), "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlugFollowsGitHub(t *testing.T) {
	for in, want := range map[string]string{
		"nsqd's disk is full":            "nsqds-disk-is-full",
		"Is it healthy?":                 "is-it-healthy",
		"`NoWindowWritten`: no window":   "nowindowwritten-no-window",
		"Redis is down (and its client)": "redis-is-down-and-its-client",
		"integer_gen [metrics](x.md)":    "integer_gen-metrics",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
	s := runbookSections("# A\n## Fix\none\n## Fix\ntwo\n```\n# not a heading\n```\n")
	if s["fix"] != "one\n" || !strings.Contains(s["fix-1"], "two") || strings.Contains(s["fix"], "two") || s["not-a-heading"] != "" {
		t.Errorf("sections: %q", s)
	}
}

// Every expression parses with the PromQL of the pinned Prometheus (this
// module's, TestPrometheusVersionIsOne), and every metric it selects is
// one the services export, their process collector's, or Prometheus's up:
// a renamed metric would leave an alert that can never fire.
func TestAlertsSelectExportedMetrics(t *testing.T) {
	names := metricnames.Services()
	names["up"] = true
	names.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	p := parser.NewParser(parser.Options{})
	for _, r := range loadRules(t) {
		expr, err := p.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("alert %s: %v", r.Alert, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !names[vs.Name] {
				t.Errorf("alert %s: no service exports %s", r.Alert, vs.Name)
			}
			return nil
		})
	}
}

// The monitoring job carries rules.yml verbatim through a Nomad template
// with the dashboard's delimiters, since its {{ }} are Prometheus's.
func TestRulesFitTheTemplateDelimiters(t *testing.T) {
	rules := string(read(t, dir+"rules.yml"))
	for _, d := range []string{"[[[", "]]]"} {
		if strings.Contains(rules, d) {
			t.Errorf("rules.yml contains %s, the delimiter the job's template carries it with", d)
		}
	}
}
