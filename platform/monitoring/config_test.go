package monitoring

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"gopkg.in/yaml.v3"
)

// render renders a file as the Nomad template (consul-template, Go's
// text/template) does, with env reading env only: a function or a variable
// the job does not provide fails here rather than in the allocation.
func render(t *testing.T, name string, env map[string]string) []byte {
	t.Helper()
	funcs := template.FuncMap{"env": func(k string) (string, error) {
		v, ok := env[k]
		if !ok {
			t.Errorf("%s reads the environment variable %s, which the test does not give it", name, k)
		}
		return v, nil
	}}
	tpl, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(read(t, dir+name)))
	if err != nil {
		t.Fatalf("%s is not a template with env only: %v", name, err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, nil); err != nil {
		t.Fatalf("rendering %s: %v", name, err)
	}
	return []byte(b.String())
}

type consulSD struct {
	Server   string         `yaml:"server"`
	Scheme   string         `yaml:"scheme"`
	Services []string       `yaml:"services"`
	TLS      map[string]any `yaml:"tls_config"`
	Auth     map[string]any `yaml:"authorization"`
}

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName  string     `yaml:"job_name"`
		ConsulSD []consulSD `yaml:"consul_sd_configs"`
		Relabel  []struct {
			SourceLabels []string `yaml:"source_labels"`
			TargetLabel  string   `yaml:"target_label"`
		} `yaml:"relabel_configs"`
	} `yaml:"scrape_configs"`
	Alerting struct {
		Alertmanagers []struct {
			ConsulSD []consulSD `yaml:"consul_sd_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
}

// prometheus.yml, rendered for the cluster (Consul over TLS with a token)
// and for a dev agent (plain HTTP), passes promtool check config as it is,
// Consul discovery included, with rules.yml beside it, and finds the
// services and Alertmanager in Consul.
func TestPrometheusConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"cluster", true}, {"dev", false}} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			secrets := filepath.Join(tmp, "secrets")
			env := map[string]string{"CONSUL_HTTP_ADDR": "127.0.0.1:8501", "CONSUL_HTTP_SSL": "false", "NOMAD_SECRETS_DIR": secrets}
			if tc.tls {
				env["CONSUL_HTTP_SSL"] = "true"
			}
			rendered := render(t, "prometheus.yml", env)

			var cfg prometheusConfig
			if err := yaml.Unmarshal(rendered, &cfg); err != nil {
				t.Fatalf("rendered prometheus.yml is not YAML: %v\n%s", err, rendered)
			}
			if !slices.Contains(cfg.RuleFiles, "rules.yml") {
				t.Errorf("prometheus.yml: rule_files %v does not load rules.yml", cfg.RuleFiles)
			}
			var sds []consulSD
			if len(cfg.ScrapeConfigs) != 1 || len(cfg.ScrapeConfigs[0].ConsulSD) != 1 {
				t.Fatalf("prometheus.yml: want one scrape config with one consul_sd_configs, got %+v", cfg.ScrapeConfigs)
			}
			sc := cfg.ScrapeConfigs[0]
			sds = append(sds, sc.ConsulSD[0])
			for _, s := range []string{"integer-gen", "integeraverage-cal", "integer-api"} {
				if !slices.Contains(sc.ConsulSD[0].Services, s) {
					t.Errorf("prometheus.yml does not scrape the Consul service %s", s)
				}
			}
			// The rules select by job = the Consul service name.
			jobIsService := false
			for _, r := range sc.Relabel {
				jobIsService = jobIsService || (r.TargetLabel == "job" && slices.Equal(r.SourceLabels, []string{"__meta_consul_service"}))
			}
			if !jobIsService {
				t.Errorf("prometheus.yml: no relabeling sets job from __meta_consul_service: %+v", sc.Relabel)
			}
			if len(cfg.Alerting.Alertmanagers) != 1 || len(cfg.Alerting.Alertmanagers[0].ConsulSD) != 1 ||
				!slices.Equal(cfg.Alerting.Alertmanagers[0].ConsulSD[0].Services, []string{"alertmanager"}) {
				t.Errorf("prometheus.yml does not find Alertmanager as the Consul service alertmanager: %+v", cfg.Alerting)
			} else {
				sds = append(sds, cfg.Alerting.Alertmanagers[0].ConsulSD[0])
			}
			for _, sd := range sds {
				if sd.Server != env["CONSUL_HTTP_ADDR"] {
					t.Errorf("prometheus.yml: Consul at %q, want CONSUL_HTTP_ADDR (%s)", sd.Server, env["CONSUL_HTTP_ADDR"])
				}
				secure := sd.Scheme == "https" && sd.TLS["ca_file"] == filepath.Join(secrets, "consul-ca.pem") &&
					sd.Auth["credentials_file"] == filepath.Join(secrets, "consul-token")
				if secure != tc.tls {
					t.Errorf("prometheus.yml for %s: Consul over %q, tls %v, authorization %v", tc.name, sd.Scheme, sd.TLS, sd.Auth)
				}
			}

			need(t, promtool, "promtool")
			if err := os.Mkdir(secrets, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"consul-ca.pem", "consul-token"} {
				if err := os.WriteFile(filepath.Join(secrets, f), []byte("placeholder\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// As in the task's directory: rules.yml beside prometheus.yml.
			if err := os.WriteFile(filepath.Join(tmp, "rules.yml"), read(t, dir+"rules.yml"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), rendered, 0o644); err != nil {
				t.Fatal(err)
			}
			out := run(t, "prometheus.yml rendered for "+tc.name, promtool, "check", "config", filepath.Join(tmp, "prometheus.yml"))
			if !t.Failed() && (!strings.Contains(out, "SUCCESS: 1 rule files found") || !strings.Contains(out, filepath.Join(tmp, "rules.yml"))) {
				t.Errorf("promtool check config did not check rules.yml beside prometheus.yml:\n%s", out)
			}
		})
	}
}

type alertmanagerConfig struct {
	Route struct {
		Receiver string `yaml:"receiver"`
	} `yaml:"route"`
	InhibitRules []struct {
		Source []string `yaml:"source_matchers"`
		Target []string `yaml:"target_matchers"`
	} `yaml:"inhibit_rules"`
	Receivers []struct {
		Name     string `yaml:"name"`
		Webhooks []struct {
			URL string `yaml:"url"`
		} `yaml:"webhook_configs"`
	} `yaml:"receivers"`
}

// alertmanager.yml, rendered with and without the operator's webhook URL,
// passes amtool check-config; its one route ends at a receiver that posts
// to that URL, or to nothing when there is none; its inhibitions name
// alerts rules.yml has.
func TestAlertmanagerConfig(t *testing.T) {
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		alerts[r.Alert] = true
	}
	for _, tc := range []struct{ name, url string }{
		{"webhook", "https://hooks.example.invalid/loopstock?token=x"},
		{"no webhook", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rendered := render(t, "alertmanager.yml", map[string]string{"ALERTMANAGER_WEBHOOK_URL": tc.url})
			var cfg alertmanagerConfig
			if err := yaml.Unmarshal(rendered, &cfg); err != nil {
				t.Fatalf("rendered alertmanager.yml is not YAML: %v\n%s", err, rendered)
			}
			if len(cfg.Receivers) != 1 || cfg.Receivers[0].Name != cfg.Route.Receiver {
				t.Fatalf("alertmanager.yml: want one receiver, the route's (%q), got %+v", cfg.Route.Receiver, cfg.Receivers)
			}
			var urls []string
			for _, w := range cfg.Receivers[0].Webhooks {
				urls = append(urls, w.URL)
			}
			if want := []string{tc.url}; (tc.url == "" && len(urls) != 0) || (tc.url != "" && !slices.Equal(urls, want)) {
				t.Errorf("alertmanager.yml with ALERTMANAGER_WEBHOOK_URL=%q posts to %q", tc.url, urls)
			}
			for _, in := range cfg.InhibitRules {
				for _, m := range append(in.Source, in.Target...) {
					if name, ok := strings.CutPrefix(m, `alertname="`); ok && !alerts[strings.TrimSuffix(name, `"`)] {
						t.Errorf("alertmanager.yml inhibits with %s: no such alert in rules.yml", m)
					}
				}
			}

			need(t, amtool, "amtool")
			path := filepath.Join(t.TempDir(), "alertmanager.yml")
			if err := os.WriteFile(path, rendered, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "alertmanager.yml rendered with "+tc.name, amtool, "check-config", path)
		})
	}
}
