package deploy

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/testenv"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleJob = `job "x" {}
variable "driver" {
  type    = string
  default = "exec"
}
variable "counts" {
  type    = map(number)
  default = { api = 2 }
}
variable "datacenters" {
  type = list(string)
}
`

func TestJobVariablesGivesAJobOnlyWhatItDeclaresLaterSourcesWinning(t *testing.T) {
	dir := t.TempDir()
	job := write(t, dir, "x.nomad.hcl", sampleJob)
	shared := write(t, dir, "shared.hcl", "datacenters = [\"dc1\"]\ndriver = \"raw_exec\"\nbin_dir = \"/opt\"\ncounts = { api = 3 }\n")
	env := []string{"NOMAD_VAR_driver=exec", "NOMAD_VAR_other=1", "PATH=/bin", "NOMAD_VAR_counts={ api = 4 }"}
	got, err := JobVariables(job, shared, env, map[string]string{"counts": "{ api = 5 }", "not_declared": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := "counts = { api = 5 }\ndatacenters = [\"dc1\"]\ndriver = \"exec\"\n"
	if got != want {
		t.Errorf("JobVariables:\n%s\nwant:\n%s", got, want)
	}
	// A string variable takes the text as it is, quotes and all.
	got, err = JobVariables(job, "", []string{`NOMAD_VAR_driver=say "hi" ${x}`}, nil)
	if err != nil || got != `driver = "say \"hi\" $${x}"`+"\n" {
		t.Errorf("a string with quotes and an interpolation: %q (%v)", got, err)
	}
	// Any other type is an HCL expression, and a bad one says which.
	_, err = JobVariables(job, "", []string{"NOMAD_VAR_counts={ api = "}, nil)
	if err == nil || !strings.Contains(err.Error(), "NOMAD_VAR_counts") || !strings.Contains(err.Error(), "map(number)") {
		t.Errorf("a malformed map from NOMAD_VAR_counts: %v", err)
	}
	// A var file holds assignments only.
	bad := write(t, dir, "bad.hcl", "job \"y\" {}\n")
	if _, err := JobVariables(job, bad, nil, nil); err == nil || !strings.Contains(err.Error(), "bad.hcl:1") {
		t.Errorf("a var file with a block: %v", err)
	}
}

func TestUnusedNamesWhatNoJobDeclares(t *testing.T) {
	dir := t.TempDir()
	job := write(t, dir, "x.nomad.hcl", sampleJob)
	shared := write(t, dir, "shared.hcl", "driver = \"exec\"\ndriverr = \"exec\"\n")
	got, err := Unused(shared, []string{job})
	if err != nil || len(got) != 1 || got[0] != "driverr" {
		t.Errorf("Unused: %v (%v), want [driverr]", got, err)
	}
}

// The project's own var files and jobs: every setting of a target's file
// reaches at least one job.
func TestTheTargetsVarFilesSetOnlyDeclaredVariables(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	for _, target := range []string{"dev", "cluster"} {
		got, err := Unused(filepath.Join(repo, "nomad", "vars", target+".hcl"), jobFiles(repo, append(Jobs, "monitoring")))
		if err != nil || len(got) > 0 {
			t.Errorf("nomad/vars/%s.hcl: %v set but declared by no job (%v)", target, got, err)
		}
	}
}

var operatorEnv = map[string]string{
	"release_url":         "https://releases.example/loopstock_1_linux_amd64.tar.gz",
	"release_sha256":      strings.Repeat("ab", 32),
	"nsq_url":             "https://releases.example/nsq.tar.gz",
	"nsq_sha256":          strings.Repeat("cd", 32),
	"prometheus_url":      "https://releases.example/prometheus.tar.gz",
	"prometheus_sha256":   strings.Repeat("ef", 32),
	"alertmanager_url":    "https://releases.example/alertmanager.tar.gz",
	"alertmanager_sha256": strings.Repeat("01", 32),
}

// A cluster deploy without the operator's values is refused with every
// missing or malformed one named, and nothing reaches Nomad or Consul.
func TestRunRefusesAClusterDeployWithoutTheOperatorsValues(t *testing.T) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var connections atomic.Int32
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			c.Close()
		}
	}()
	ca := write(t, t.TempDir(), "ca.pem", "-----BEGIN CERTIFICATE-----\n")
	base := []string{"NOMAD_ADDR=http://" + sink.Addr().String(), "CONSUL_HTTP_ADDR=http://" + sink.Addr().String(),
		"CONSUL_TOKEN=services-token", "CONSUL_CA=" + ca}
	run := func(vars map[string]string, extra ...string) (string, error) {
		env := append(append([]string{}, base...), extra...)
		for k, v := range vars {
			env = append(env, "NOMAD_VAR_"+k+"="+v)
		}
		var out bytes.Buffer
		repo, _ := filepath.Abs("../..")
		err := Run(context.Background(), Options{Repo: repo, Data: t.TempDir(), Timeout: time.Second, Env: env, Out: &out})
		return out.String(), err
	}
	_, err = run(nil)
	if err == nil {
		t.Fatal("Run deployed to a cluster with no release, NSQ or monitoring given")
	}
	for k := range operatorEnv {
		if !strings.Contains(err.Error(), "NOMAD_VAR_"+k) {
			t.Errorf("the refusal does not name NOMAD_VAR_%s:\n%v", k, err)
		}
	}
	// Prometheus's own token; Grafana is optional, and half of it is a mistake.
	if !strings.Contains(err.Error(), "PROMETHEUS_CONSUL_TOKEN") || strings.Contains(err.Error(), "grafana") {
		t.Errorf("the refusal should name PROMETHEUS_CONSUL_TOKEN and not Grafana:\n%v", err)
	}
	if _, err := run(map[string]string{"grafana_url": "https://releases.example/grafana.tar.gz"}); err == nil ||
		!strings.Contains(err.Error(), "NOMAD_VAR_grafana_sha256") {
		t.Errorf("a Grafana URL without its checksum: %v", err)
	}
	if _, err := run(nil, "NOMAD_RUN_MONITORING=no"); err == nil || strings.Contains(err.Error(), "prometheus") ||
		strings.Contains(err.Error(), "PROMETHEUS") || !strings.Contains(err.Error(), "NOMAD_VAR_release_url") {
		t.Errorf("NOMAD_RUN_MONITORING=no still asks for monitoring's values: %v", err)
	}
	for _, bad := range []struct{ name, value string }{
		{"release_sha256", strings.Repeat("0", 64)},
		{"nsq_sha256", strings.Repeat("0", 64)},
		{"alertmanager_sha256", "sha256:" + strings.Repeat("ab", 32)},
		{"prometheus_sha256", strings.Repeat("ab", 31)},
	} {
		vars := map[string]string{}
		for k, v := range operatorEnv {
			vars[k] = v
		}
		vars[bad.name] = bad.value
		_, err := run(vars, "PROMETHEUS_CONSUL_TOKEN=prometheus-token")
		if err == nil || !strings.Contains(err.Error(), "NOMAD_VAR_"+bad.name) {
			t.Errorf("NOMAD_VAR_%s=%s: not refused naming it: %v", bad.name, bad.value, err)
			continue
		}
		for k := range operatorEnv {
			if k != bad.name && (strings.Contains(err.Error(), "NOMAD_VAR_"+k+" ") || strings.Contains(err.Error(), "NOMAD_VAR_"+k+"=")) {
				t.Errorf("NOMAD_VAR_%s=%s: the refusal also names the valid NOMAD_VAR_%s:\n%v", bad.name, bad.value, k, err)
			}
		}
	}
	if n := connections.Load(); n != 0 {
		t.Errorf("%d connections reached Nomad or Consul before the refusals", n)
	}
}

// Addresses and the services half of NotReady, against a real Consul: an
// instance's own address wins over its node's; a failing one is not there.
func TestAddressesComeFromPassingInstancesInConsul(t *testing.T) {
	c := testenv.StartConsul(t)
	err := c.Client.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "nsqadmin", ID: "nsqadmin-1",
		Address: "10.0.0.31", Port: 20008, Check: &consulapi.AgentServiceCheck{TTL: "1m", Status: "passing"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Client.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "integer-api", ID: "integer-api-1",
		Port: 20011, Check: &consulapi.AgentServiceCheck{TTL: "1m", Status: "critical"}})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitPassing(t, "nsqadmin", 1, 10*time.Second)
	got, err := Addresses(context.Background(), c.Client, "nsqadmin")
	if err != nil || len(got) != 1 || got[0] != "10.0.0.31:20008" {
		t.Errorf("nsqadmin: %v (%v), want [10.0.0.31:20008]", got, err)
	}
	pending, err := NotReady(context.Background(), nil, c.Client, nil, []string{"nsqadmin", "integer-api"})
	if err != nil || len(pending) != 1 || pending[0] != "integer-api: no passing instance in Consul" {
		t.Errorf("NotReady: %q (%v)", pending, err)
	}
	if err := c.Client.Agent().PassTTL("service:integer-api-1", ""); err != nil {
		t.Fatal(err)
	}
	got, err = Addresses(context.Background(), c.Client, "integer-api")
	if err != nil || len(got) != 1 || got[0] != "127.0.0.1:20011" {
		t.Errorf("integer-api (no address of its own, the node's instead): %v (%v)", got, err)
	}
}
