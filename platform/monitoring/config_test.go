package monitoring

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/prometheus/discovery/consul"
	yamlv2 "go.yaml.in/yaml/v2"
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
// and for a dev agent (plain HTTP), passes promtool check config with
// rules.yml beside it, and finds the services and Alertmanager in Consul.
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
			static, blocks := withoutConsulSD(t, rendered)
			if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), static, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "prometheus.yml rendered for "+tc.name+", Consul discovery made static", promtool, "check", "config", filepath.Join(tmp, "prometheus.yml"))
			// What promtool could not read, Prometheus's own Consul
			// discovery reads, as strictly as Prometheus loads its config.
			for i, b := range blocks {
				out, err := yaml.Marshal(b)
				if err == nil {
					err = yamlv2.UnmarshalStrict(out, &consul.SDConfig{})
				}
				if err != nil {
					t.Errorf("prometheus.yml rendered for %s, consul_sd_configs %d: %v\n%s", tc.name, i+1, err, out)
				}
			}
			if len(blocks) != 2 {
				t.Errorf("prometheus.yml: %d consul_sd_configs entries, want 2 (services, Alertmanager)", len(blocks))
			}
		})
	}
}

// withoutConsulSD swaps every consul_sd_configs of a Prometheus config for
// static_configs and returns that config and the Consul blocks. Debian's
// Prometheus is built without Consul discovery, so its promtool refuses
// the field; the rest of the config (rule_files and the rules they load,
// relabelings, alerting) it checks as it is.
func withoutConsulSD(t *testing.T, rendered []byte) ([]byte, []*yaml.Node) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(rendered, &doc); err != nil {
		t.Fatal(err)
	}
	var static yaml.Node
	if err := yaml.Unmarshal([]byte(`[{targets: ["127.0.0.1:9"]}]`), &static); err != nil {
		t.Fatal(err)
	}
	var blocks []*yaml.Node
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k, v := n.Content[i], n.Content[i+1]; k.Value == "consul_sd_configs" && v.Kind == yaml.SequenceNode {
					blocks = append(blocks, v.Content...)
					k.Value, n.Content[i+1] = "static_configs", static.Content[0]
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out, blocks
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
