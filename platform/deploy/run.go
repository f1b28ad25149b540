package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// Jobs are the job files make nomad-run deploys, in order: what a job
// finds through Consul is deployed before it.
var Jobs = []string{"redis", "redis-sentinel", "nsq", "nsqd", "integer-api", "integeraverage-cal", "integer-gen"}

// ClusterOnly are the jobs a dev agent (one host) does without: its one
// Redis has no Sentinels.
var ClusterOnly = []string{"redis-sentinel"}

// DevJobs and DevServices are Jobs and Services on a dev agent.
func DevJobs() []string { return withoutClusterOnly(Jobs) }

// DevServices: see DevJobs.
func DevServices() []string { return withoutClusterOnly(Services) }

func withoutClusterOnly(list []string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return slices.Contains(ClusterOnly, s) })
}

// Services are what those jobs register in Consul (the last three
// register themselves).
var Services = []string{"redis", "redis-sentinel", "nsqlookupd", "nsqadmin", "nsqd", "integer-api", "integeraverage-cal", "integer-gen"}

// Secrets are the items of each job's Nomad variable (nomad/jobs/<job>)
// that its templates read; on a cluster the services and monitoring also
// get the Consul ACL token and CA (ConsulSecrets).
var Secrets = map[string][]string{
	"redis":              {"redis_password"},
	"integer-api":        {"write_token", "redis_password"},
	"integeraverage-cal": {"write_token"},
}

// ConsulSecrets are the jobs that read consul_token and consul_ca when
// Consul has ACLs and TLS (consul_tls): the services' token (CONSUL_TOKEN),
// and Prometheus's own for monitoring (PROMETHEUS_CONSUL_TOKEN).
var ConsulSecrets = []string{"integer-api", "integeraverage-cal", "integer-gen", "monitoring"}

// MonitoringServices are what the monitoring job registers in Consul
// (Grafana too when it runs).
var MonitoringServices = []string{"prometheus", "alertmanager"}

// Options are make nomad-run's settings: the checkout and the operator's
// environment (NOMAD_*, CONSUL_*, NOMAD_VAR_*, NOMAD_RUN_*).
type Options struct {
	Repo    string        // the checkout: nomad/ and .bin/ are in it
	Data    string        // .data: the generated secrets and the dev agents' state
	Timeout time.Duration // how long to wait for every job to be healthy
	Env     []string      // the environment, KEY=VALUE
	Out     io.Writer
}

func (o Options) env(key string) string {
	for i := len(o.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(o.Env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (o Options) cluster() bool { return o.env("NOMAD_ADDR") != "" }

// monitoring: whether the monitoring job is deployed. On a cluster unless
// NOMAD_RUN_MONITORING=no; on dev agents when its binaries are in .bin
// (make tools builds Prometheus and Alertmanager).
func (o Options) monitoring() bool {
	if o.cluster() {
		return o.env("NOMAD_RUN_MONITORING") != "no"
	}
	return isExecutable(filepath.Join(o.Repo, ".bin", "prometheus")) && isExecutable(filepath.Join(o.Repo, ".bin", "alertmanager"))
}

// grafana: whether the monitoring job runs Grafana, which is optional: on
// a cluster when its tarball is given, on dev agents when it is on PATH.
func (o Options) grafana() bool {
	if o.cluster() {
		return o.env("NOMAD_VAR_grafana_url") != "" || o.env("NOMAD_VAR_grafana_sha256") != ""
	}
	_, err := exec.LookPath("grafana")
	return err == nil
}

// FileVariables are the job variables that hold a file of nomad/ as their
// text: Nomad's parse API refuses file(), so the command reads them.
var FileVariables = map[string]string{
	"prometheus_config":   "monitoring/prometheus.yml",
	"prometheus_rules":    "monitoring/rules.yml",
	"alertmanager_config": "monitoring/alertmanager.yml",
	"grafana_dashboard":   "monitoring/loopstock-dashboard.json",
}

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// OperatorProblems are what keeps a cluster deploy from starting: each
// names the setting and what to set it to. Nothing reaches Nomad while
// there is one.
func (o Options) OperatorProblems() []string {
	var problems []string
	need := func(key, what string) {
		if o.env(key) == "" {
			problems = append(problems, key+" is not set: "+what)
		}
	}
	needSHA := func(key, of string) {
		switch v := o.env(key); {
		case v == "":
			problems = append(problems, key+" is not set: the SHA-256 of "+of)
		case strings.Trim(v, "0") == "":
			problems = append(problems, key+" is all zeros, a placeholder: set the SHA-256 of "+of)
		case !sha256Hex.MatchString(v):
			problems = append(problems, key+"="+v+" is not a SHA-256 (64 hex digits, no prefix): set the SHA-256 of "+of)
		}
	}
	need("NOMAD_VAR_release_url", "the URL the clients fetch dist/loopstock_<version>_linux_amd64.tar.gz from (make dist builds it)")
	needSHA("NOMAD_VAR_release_sha256", "that tarball (its line in dist/SHA256SUMS)")
	need("NOMAD_VAR_nsq_url", "the URL of the NSQ v1.3.0 release tarball nsq-1.3.0.linux-amd64.go1.21.5.tar.gz")
	needSHA("NOMAD_VAR_nsq_sha256", "the NSQ tarball")
	if o.monitoring() {
		need("NOMAD_VAR_prometheus_url", "the URL of prometheus-3.16.0.linux-amd64.tar.gz (make monitoring-release builds it; or NOMAD_RUN_MONITORING=no leaves the monitoring job out)")
		needSHA("NOMAD_VAR_prometheus_sha256", "the Prometheus tarball")
		need("NOMAD_VAR_alertmanager_url", "the URL of alertmanager-0.25.0.linux-amd64.tar.gz (or NOMAD_RUN_MONITORING=no)")
		needSHA("NOMAD_VAR_alertmanager_sha256", "the Alertmanager tarball")
		need("PROMETHEUS_CONSUL_TOKEN", "Prometheus's own Consul ACL token, which reads the catalog (tofu output -raw prometheus_consul_token; or NOMAD_RUN_MONITORING=no)")
		if o.grafana() {
			need("NOMAD_VAR_grafana_url", "the URL of grafana-11.2.0.linux-amd64.tar.gz (Grafana is optional: set both or neither)")
			needSHA("NOMAD_VAR_grafana_sha256", "the Grafana tarball (Grafana is optional: set both or neither)")
		}
	}
	need("CONSUL_HTTP_ADDR", `the Consul HTTPS API (https://<server>:8501; eval "$(tofu output -raw operator_env)"), to wait for the services and print their addresses`)
	need("CONSUL_TOKEN", "the services' Consul ACL token (tofu output -raw loopstock_consul_token)")
	if ca := o.env("CONSUL_CA"); ca == "" || !nonEmptyFile(ca) {
		problems = append(problems, "CONSUL_CA is not a file: the cluster's CA certificate, which the services verify Consul with (tofu output -raw ca_cert)")
	}
	return problems
}

func nonEmptyFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// Run deploys every job and waits until the stack is running and healthy,
// then prints where to reach it. With NOMAD_ADDR unset it starts Consul
// and Nomad dev agents on 127.0.0.1 first.
func Run(ctx context.Context, o Options) error {
	jobs, services := append([]string{}, Jobs...), append([]string{}, Services...)
	if o.monitoring() {
		jobs, services = append(jobs, "monitoring"), append(services, MonitoringServices...)
		if o.grafana() {
			services = append(services, "grafana")
		}
	} else if !o.cluster() {
		fmt.Fprintln(o.Out, "no .bin/prometheus or .bin/alertmanager (make tools builds them): the monitoring job is left out")
	}
	var (
		nomad     *nomadapi.Client
		consul    *consulapi.Client
		varFile   string
		overrides = map[string]string{}
		err       error
	)
	if o.cluster() {
		if problems := o.OperatorProblems(); len(problems) > 0 {
			return fmt.Errorf("not deploying to %s:\n  %s\nSee nomad/README.md, \"Cluster\".", o.env("NOMAD_ADDR"), strings.Join(problems, "\n  "))
		}
		if nomad, err = nomadapi.NewClient(nomadapi.DefaultConfig()); err != nil {
			return fmt.Errorf("the Nomad client: %w", err)
		}
		if consul, err = consulapi.NewClient(consulapi.DefaultNonPooledConfig()); err != nil {
			return fmt.Errorf("the Consul client: %w", err)
		}
		varFile = filepath.Join(o.Repo, "nomad", "vars", "cluster.hcl")
		// NOMAD_RUN_VARS="name=value …" overrides the cluster's own
		// settings: redis_driver=exec where no Docker engine runs.
		for _, kv := range strings.Fields(o.env("NOMAD_RUN_VARS")) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("NOMAD_RUN_VARS: %q is not name=value", kv)
			}
			overrides[k] = v
		}
	} else {
		if os.Geteuid() != 0 {
			fmt.Fprintln(o.Out, "warning: not root: the exec driver (Redis on the dev agent) needs root; run with sudo if Redis does not start")
		}
		agents, err := StartDevAgents(ctx, filepath.Join(o.Data, "nomad-dev"), filepath.Join(o.Repo, ".bin"), o.Out)
		if err != nil {
			return err
		}
		nomad, consul = agents.Nomad, agents.Consul
		varFile = filepath.Join(o.Repo, "nomad", "vars", "dev.hcl")
		overrides["bin_dir"] = filepath.Join(o.Repo, ".bin")
		overrides["redis_node"] = agents.NodeName
		// One host: one Redis, no Sentinels (nomad/vars/dev.hcl).
		jobs, services = withoutClusterOnly(jobs), withoutClusterOnly(services)
	}
	if unused, err := Unused(varFile, jobFiles(o.Repo, jobs)); err != nil {
		return err
	} else if len(unused) > 0 {
		return fmt.Errorf("%s sets %s, which no job declares: a misspelt name? (nomad/README.md lists each job's variables)", varFile, strings.Join(unused, ", "))
	}
	if err := o.writeSecrets(ctx, nomad, jobs); err != nil {
		return err
	}
	for name, file := range FileVariables {
		if name == "grafana_dashboard" && !o.grafana() {
			continue // no Grafana, no dashboard to provision
		}
		b, err := os.ReadFile(filepath.Join(o.Repo, "nomad", file))
		if err != nil {
			return err
		}
		overrides[name] = string(b)
	}
	overrides["grafana"] = fmt.Sprint(o.grafana())

	for _, job := range jobs {
		fmt.Fprintf(o.Out, "==> %s: deploying\n", job)
		file := filepath.Join(o.Repo, "nomad", job+".nomad.hcl")
		vars, err := JobVariables(file, varFile, o.Env, overrides)
		if err != nil {
			return fmt.Errorf("%s: %w", job, err)
		}
		parsed, err := Parse(nomad, file, vars)
		if err != nil {
			return err
		}
		outcome, err := Submit(ctx, nomad, parsed, o.Out)
		if err != nil {
			deployed := jobs[:slices.Index(jobs, job)+1]
			return fmt.Errorf("%w\nWhat Nomad says of the allocations so far:\n%s\nSee nomad job status %s and nomad alloc status <allocation>.",
				err, Diagnose(ctx, nomad, deployed), job)
		}
		for g, n := range outcome.Unplaced {
			fmt.Fprintf(o.Out, "==> %s: %d allocation(s) of group %s not placed yet (nomad job status %s)\n", job, n, g, job)
		}
	}

	fmt.Fprintf(o.Out, "==> waiting for every allocation to run and every service to pass (up to %s)\n", o.Timeout)
	var pending []string
	err = poll(ctx, o.Timeout, func() error {
		pending, err = NotReady(ctx, nomad, consul, jobs, services)
		if err == nil && len(pending) > 0 {
			err = errors.New("not ready")
		}
		return err
	})
	if err != nil {
		if len(pending) == 0 {
			return err
		}
		return fmt.Errorf("not running and healthy after %s:\n  %s\nWhat Nomad says of the allocations:\n%s\nSee nomad job status <job>, nomad alloc status <allocation>, and Consul's checks (consul catalog services).",
			o.Timeout, strings.Join(pending, "\n  "), Diagnose(ctx, nomad, jobs))
	}
	fmt.Fprintln(o.Out, "==> every job healthy")
	return o.printURLs(ctx, nomad, consul)
}

func jobFiles(repo string, jobs []string) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, filepath.Join(repo, "nomad", j+".nomad.hcl"))
	}
	return out
}

// writeSecrets puts each job's Nomad variable. The generated secrets are
// kept in Data (0600) and taken back from Nomad when that copy is missing:
// a second checkout must not rotate them.
func (o Options) writeSecrets(ctx context.Context, nomad *nomadapi.Client, jobs []string) error {
	values := map[string]string{}
	for item, job := range map[string]string{"write_token": "integer-api", "redis_password": "redis"} {
		v, err := o.secret(ctx, nomad, item, job)
		if err != nil {
			return err
		}
		values[item] = v
	}
	if o.cluster() {
		for name, at := range generatedDataSecrets {
			v, err := o.secretAt(ctx, nomad, name, at.job, at.item)
			if err != nil {
				return err
			}
			values[name] = v
		}
		if err := dataSecretValues(values); err != nil {
			return err
		}
		// The derived files too, for nomad/README.md's by-hand commands.
		for item, name := range map[string]string{"nsq_grants": "nsq-grants.json", "redis_acl": "redis-acl", "sentinel_users": "sentinel-users"} {
			path := filepath.Join(o.Data, name)
			if err := os.WriteFile(path, []byte(values[item]), 0o600); err != nil {
				return err
			}
			if err := os.Chmod(path, 0o600); err != nil { // an older file keeps its mode otherwise
				return err
			}
		}
	}
	if o.cluster() {
		ca, err := os.ReadFile(o.env("CONSUL_CA"))
		if err != nil {
			return err
		}
		values["consul_token"], values["consul_ca"] = o.env("CONSUL_TOKEN"), string(ca)
	}
	for _, job := range jobs {
		items := append([]string{}, Secrets[job]...)
		if o.cluster() && contains(ConsulSecrets, job) {
			items = append(items, "consul_token", "consul_ca")
		}
		if o.cluster() {
			items = append(items, DataSecrets[job]...)
		}
		if len(items) == 0 {
			continue
		}
		v := &nomadapi.Variable{Path: "nomad/jobs/" + job, Items: nomadapi.VariableItems{}}
		for _, item := range items {
			v.Items[item] = values[item]
			if per, ok := values[job+"/"+item]; ok {
				v.Items[item] = per
			}
		}
		if job == "monitoring" && o.cluster() {
			v.Items["consul_token"] = o.env("PROMETHEUS_CONSUL_TOKEN")
		}
		if _, _, err := nomad.Variables().Update(v, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("writing the Nomad variable %s: %w", v.Path, err)
		}
	}
	return nil
}

func (o Options) secret(ctx context.Context, nomad *nomadapi.Client, item, job string) (string, error) {
	return o.secretAt(ctx, nomad, item, job, item)
}

// secretAt is the secret kept in .data/<name with dashes>, or else in the
// item of job's Nomad variable (no job: none), or else a new one.
func (o Options) secretAt(ctx context.Context, nomad *nomadapi.Client, name, job, item string) (string, error) {
	file := filepath.Join(o.Data, strings.ReplaceAll(name, "_", "-"))
	if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
		return string(b), os.Chmod(file, 0o600)
	}
	value := ""
	if job != "" {
		if v, _, err := nomad.Variables().Read("nomad/jobs/"+job, (&nomadapi.QueryOptions{}).WithContext(ctx)); err == nil && v != nil {
			value = v.Items[item]
		}
	}
	if value == "" {
		b := make([]byte, 24)
		rand.Read(b)
		value = hex.EncodeToString(b)
	}
	if err := os.MkdirAll(o.Data, 0o755); err != nil {
		return "", err
	}
	return value, os.WriteFile(file, []byte(value), 0o600)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (o Options) printURLs(ctx context.Context, nomad *nomadapi.Client, consul *consulapi.Client) error {
	first := func(svc string) string {
		a, err := Addresses(ctx, consul, svc)
		if err != nil || len(a) == 0 {
			return ""
		}
		return a[0]
	}
	consulUI := o.env("CONSUL_HTTP_ADDR")
	if !o.cluster() || consulUI == "" {
		consulUI = "http://" + DevConsulAddr
	} else if !strings.Contains(consulUI, "://") {
		consulUI = "http://" + consulUI
	}
	nomadUI := o.env("NOMAD_ADDR")
	if nomadUI == "" {
		nomadUI = DevNomadAddr
	}
	fmt.Fprintf(o.Out, "loopstock on Nomad:\n  Consul UI   %s/ui\n  Nomad UI    %s/ui\n  nsqadmin    http://%s\n  API         http://%s/v1/integers\n",
		consulUI, nomadUI, first("nsqadmin"), first("integer-api"))
	for _, svc := range []struct{ name, path string }{{"prometheus", "/api/v1/alerts"}, {"alertmanager", "/api/v2/alerts"}} {
		if a := first(svc.name); a != "" {
			fmt.Fprintf(o.Out, "  %-11s http://%s%s\n", strings.ToUpper(svc.name[:1])+svc.name[1:], a, svc.path)
		}
	}
	if g := first("grafana"); g != "" {
		fmt.Fprintf(o.Out, "  Grafana     http://%s/d/loopstock\n", g)
	}
	return nil
}

// Stop stops every job (purged) and, when make nomad-run started them, the
// dev agents; no process of the stack is left running.
func Stop(ctx context.Context, o Options) error {
	var nomad *nomadapi.Client
	var err error
	if o.cluster() {
		nomad, err = nomadapi.NewClient(nomadapi.DefaultConfig())
	} else {
		_, nomad, err = DevClients()
	}
	if err != nil {
		return err
	}
	all := append(append([]string{}, Jobs...), "monitoring")
	stopped := 0
	if _, err := nomad.Status().Leader(); err == nil {
		for i := len(all) - 1; i >= 0; i-- {
			if _, _, err := nomad.Jobs().Info(all[i], (&nomadapi.QueryOptions{}).WithContext(ctx)); err != nil {
				continue
			}
			if _, _, err := nomad.Jobs().Deregister(all[i], true, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
				return fmt.Errorf("stopping job %s: %w", all[i], err)
			}
			fmt.Fprintf(o.Out, "stopped %s\n", all[i])
			stopped++
		}
		// Let the agent stop the tasks before it stops itself: a dev agent
		// that exits leaves its tasks running.
		if err := poll(ctx, 30*time.Second, func() error { return tasksStopped(ctx, nomad, all) }); err != nil {
			fmt.Fprintf(o.Out, "warning: %v\n", err)
		}
	} else if o.cluster() {
		return fmt.Errorf("Nomad at %s does not answer: %w", o.env("NOMAD_ADDR"), err)
	}
	if o.cluster() {
		return nil
	}
	if err := StopDevAgents(filepath.Join(o.Data, "nomad-dev"), o.Out); err != nil {
		return err
	}
	if stopped == 0 {
		fmt.Fprintln(o.Out, "no job of the stack was running")
	}
	return nil
}

func tasksStopped(ctx context.Context, nomad *nomadapi.Client, jobs []string) error {
	allocs, _, err := nomad.Allocations().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	for _, a := range allocs {
		if contains(jobs, a.JobID) && (a.ClientStatus == nomadapi.AllocClientStatusRunning || a.ClientStatus == nomadapi.AllocClientStatusPending) {
			return fmt.Errorf("allocation %s of %s still %s", short(a.ID), a.JobID, a.ClientStatus)
		}
	}
	return nil
}
