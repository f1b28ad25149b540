package nomad

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/platform/metricnames"
)

func exported() metricnames.Set { return metricnames.Services() }

var ourMetric = regexp.MustCompile(`\b(integer_gen|integeraverage_cal|integer_api)_[a-z0-9_]+`)

// Every query of the dashboard names metrics the services export: renaming
// a metric without the dashboard fails here.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("monitoring/loopstock-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	names := exported()
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := ourMetric.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: %q names none of the services' metrics", p.Title, tg.Expr)
			}
			for _, m := range found {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b := strings.TrimSuffix(m, suffix); b != m && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q: metric %s is not exported by any service", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	// What the dashboard must show.
	for _, want := range []string{"integer_gen_integers_published_total", "integeraverage_cal_integers_counted_total",
		"integeraverage_cal_last_window_average", "integeraverage_cal_window_write_lag_seconds", "integeraverage_cal_messages_rejected_total",
		"integeraverage_cal_slot_collisions_total", "integer_api_http_request_duration_seconds", "integeraverage_cal_leader"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// Prometheus naming conventions: counters end in _total, durations are in
// seconds, and the namespace is the service's.
func TestMetricNamesFollowConventions(t *testing.T) {
	var names []string
	for n := range exported() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.Contains(n, "_ms") || strings.Contains(n, "millis") {
			t.Errorf("%s: use base units (seconds)", n)
		}
		if strings.HasSuffix(n, "_duration") || strings.HasSuffix(n, "_lag") {
			t.Errorf("%s: name the unit (_seconds)", n)
		}
	}
	if len(names) < 30 {
		t.Errorf("only %d metrics: %v", len(names), names)
	}
}

// The monitoring job renders the files of nomad/monitoring/ as they are
// (platform/monitoring checks those with promtool and amtool), the rules
// with delimiters their own {{ $labels }} never use, and gives the
// configuration's template the Consul it reads on each target.
func TestMonitoringRendersItsFilesAsTheyAre(t *testing.T) {
	for target, tg := range targets(t) {
		job, err := parseJob(t, "monitoring.nomad.hcl", jobVars(t, "monitoring.nomad.hcl", tg))
		if err != nil {
			t.Fatal(err)
		}
		rendered := map[string]*api.Template{}
		env := map[string]string{}
		for _, g := range job.TaskGroups {
			for _, task := range g.Tasks {
				for _, tpl := range task.Templates {
					rendered[*tpl.DestPath] = tpl
				}
				if task.Name == "prometheus" {
					env = task.Env
				}
			}
		}
		for dest, file := range map[string]string{"local/prometheus.yml": "monitoring/prometheus.yml",
			"local/rules.yml": "monitoring/rules.yml", "local/alertmanager.yml": "monitoring/alertmanager.yml"} {
			want, _ := os.ReadFile(file)
			tpl := rendered[dest]
			switch {
			case tpl == nil:
				t.Errorf("%s: no template renders %s", target, dest)
			case *tpl.EmbeddedTmpl != string(want):
				t.Errorf("%s: %s is not %s as it is", target, dest, file)
			case dest == "local/rules.yml" && (tpl.LeftDelim == nil || strings.Contains(string(want), *tpl.LeftDelim)):
				t.Errorf("%s: the rules' template delimiters %v appear in the rules", target, tpl.LeftDelim)
			}
		}
		if wantSSL := map[string]string{"dev": "false", "cluster": "true"}[target]; env["CONSUL_HTTP_SSL"] != wantSSL || env["CONSUL_HTTP_ADDR"] == "" {
			t.Errorf("%s: Prometheus's template reads CONSUL_HTTP_SSL=%q CONSUL_HTTP_ADDR=%q", target, env["CONSUL_HTTP_SSL"], env["CONSUL_HTTP_ADDR"])
		}
	}
}

// Grafana provisions the dashboard as it is in the repository: the job
// gets its text as the variable grafana_dashboard (Nomad's parse API
// refuses file()), with delimiters its {{legend}} formats do not use.
// Without it Grafana runs with no dashboard rather than an empty one.
func TestGrafanaProvisionsTheDashboardFile(t *testing.T) {
	dashboardTemplate := func(job *api.Job) *api.Template {
		for _, g := range job.TaskGroups {
			for _, task := range g.Tasks {
				for _, tpl := range task.Templates {
					if tpl.DestPath != nil && *tpl.DestPath == "local/dashboards/loopstock.json" {
						return tpl
					}
				}
			}
		}
		return nil
	}
	for target, tg := range targets(t) {
		job, err := parseJob(t, "monitoring.nomad.hcl", jobVars(t, "monitoring.nomad.hcl", tg))
		if err != nil {
			t.Fatal(err)
		}
		tpl := dashboardTemplate(job)
		switch {
		case tpl == nil || tpl.EmbeddedTmpl == nil:
			t.Errorf("%s: no template renders local/dashboards/loopstock.json", target)
		case *tpl.EmbeddedTmpl != dashboard(t):
			t.Errorf("%s: the provisioned dashboard is not monitoring/loopstock-dashboard.json as it is", target)
		case tpl.LeftDelim == nil || strings.Contains(dashboard(t), *tpl.LeftDelim):
			t.Errorf("%s: the dashboard's template delimiter %v occurs in the dashboard", target, tpl.LeftDelim)
		}
	}
	tg := targets(t)["dev"]
	delete(tg.overrides, "grafana_dashboard")
	job, err := parseJob(t, "monitoring.nomad.hcl", jobVars(t, "monitoring.nomad.hcl", tg))
	if err != nil {
		t.Fatal(err)
	}
	if tpl := dashboardTemplate(job); tpl != nil {
		t.Errorf("without grafana_dashboard the job still renders a dashboard: %+v", tpl)
	}
}
