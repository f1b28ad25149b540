package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/loopstock/loopstock/platform/deploy"
)

// monitoringResult is what the monitoring part reports on the summary line.
type monitoringResult struct {
	targetsUp, targets int
	exprs, exprsData   int
	rules              int
}

// The services Prometheus scrapes (nomad/monitoring/prometheus.yml).
var scraped = []string{"integer-gen", "integeraverage-cal", "integer-api"}

// monitoring checks the monitoring job from outside the hosts, as an
// operator would: Prometheus found through Consul reports every instance
// of the services up, every dashboard query returns data, every rule
// evaluates, and stopping the averager makes NoWindowWritten reach
// Alertmanager, which starting it again resolves.
func (c *cl) monitoring() (*monitoringResult, error) {
	res := &monitoringResult{}
	prom, err := c.one("prometheus")
	if err != nil {
		return nil, err
	}
	c.waitFor("Prometheus: every instance of the three services an up target, found through Consul", 2*time.Minute, func() error {
		return c.targetsUp(prom, res)
	})
	c.waitFor("Prometheus: the averager's nsqd figures for every nsqd", time.Minute, func() error {
		nsqds, err := c.passing("nsqd")
		if err != nil {
			return err
		}
		v, err := query(prom, `max by (nsqd) (integeraverage_cal_nsqd_up) == 1`)
		if err == nil && len(v) < len(nsqds) {
			err = fmt.Errorf("%d nsqd with figures, %d nsqd in Consul", len(v), len(nsqds))
		}
		return err
	})

	// API traffic first: the latency and request panels need requests.
	for i := 0; i < 20; i++ {
		if _, err := c.lastWindow(); err != nil {
			return nil, err
		}
	}
	exprs, err := dashboardExprs()
	if err != nil {
		return nil, err
	}
	res.exprs = len(exprs)
	c.waitFor(fmt.Sprintf("Prometheus: every one of the %d dashboard queries returning data", len(exprs)), 3*time.Minute, func() error {
		var empty []string
		res.exprsData = 0
		for _, e := range exprs {
			v, err := query(prom, e)
			if err != nil {
				return fmt.Errorf("%s: %w", e, err)
			}
			if len(v) == 0 {
				empty = append(empty, e)
				continue
			}
			res.exprsData++
		}
		if len(empty) > 0 {
			return fmt.Errorf("%d/%d queries return data; none yet: %s", res.exprsData, len(exprs), strings.Join(empty, "; "))
		}
		return nil
	})
	c.waitFor("Prometheus: every rule evaluated without error", time.Minute, func() error {
		n, err := rulesHealthy(prom)
		res.rules = n
		return err
	})

	am, err := c.one("alertmanager")
	if err != nil {
		return nil, err
	}
	job, _, err := c.nomadClient.Jobs().Info("integeraverage-cal", nil)
	if err != nil {
		return nil, err
	}
	if _, _, err := c.nomadClient.Jobs().Deregister("integeraverage-cal", false, nil); err != nil {
		return nil, err
	}
	c.st.logf("integeraverage-cal stopped: waiting for NoWindowWritten to fire and reach Alertmanager")
	stopped := time.Now()
	c.waitFor("NoWindowWritten active in Alertmanager (/api/v2/alerts)", 3*time.Minute, func() error {
		return alertActive(am, "NoWindowWritten", true)
	})
	c.st.logf("NoWindowWritten reached Alertmanager %s after the averager stopped", time.Since(stopped).Round(time.Second))
	job.Stop = nil
	if _, _, err := c.nomadClient.Jobs().Register(job, nil); err != nil {
		return nil, err
	}
	c.waitFor("NoWindowWritten resolved once the averager runs again", 3*time.Minute, func() error {
		return alertActive(am, "NoWindowWritten", false)
	})
	c.waitFor("the stack ready again (deploy.NotReady)", 2*time.Minute, func() error {
		pending, err := deploy.NotReady(c.ctx, c.nomadClient, c.consulClient, []string{"integeraverage-cal"}, []string{"integeraverage-cal"})
		if err == nil && len(pending) > 0 {
			err = fmt.Errorf("%s", strings.Join(pending, "; "))
		}
		return err
	})
	return res, nil
}

// one is the address of a passing instance of a service in Consul.
func (c *cl) one(service string) (string, error) {
	addrs, err := deploy.Addresses(c.ctx, c.consulClient, service)
	if err != nil {
		return "", err
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("no passing %s in Consul", service)
	}
	return addrs[0], nil
}

// targetsUp: Prometheus's active targets are exactly the instances of the
// scraped services in Consul, and all of them are up.
func (c *cl) targetsUp(prom string, res *monitoringResult) error {
	want := 0
	for _, s := range scraped {
		entries, _, err := c.consulClient.Health().Service(s, "", false, nil)
		if err != nil {
			return err
		}
		want += len(entries)
	}
	var body struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string
				Health    string
				LastError string
			}
		}
	}
	if err := getJSON("http://"+prom+"/api/v1/targets?state=active", &body); err != nil {
		return err
	}
	res.targets, res.targetsUp = 0, 0
	var down []string
	for _, t := range body.Data.ActiveTargets {
		res.targets++
		if t.Health == "up" {
			res.targetsUp++
		} else {
			down = append(down, fmt.Sprintf("%s %s (%s %s)", t.Labels["job"], t.Labels["instance"], t.Health, t.LastError))
		}
	}
	if res.targets != want || res.targetsUp != res.targets {
		return fmt.Errorf("%d/%d targets up, %d instances in Consul; not up: %s", res.targetsUp, res.targets, want, strings.Join(down, ", "))
	}
	return nil
}

// dashboardExprs are the queries of every panel of the dashboard.
func dashboardExprs() ([]string, error) {
	b, err := os.ReadFile(repoDir + "/nomad/monitoring/loopstock-dashboard.json")
	if err != nil {
		return nil, err
	}
	type panel struct {
		Targets []struct{ Expr string }
		Panels  []json.RawMessage
	}
	var d struct{ Panels []json.RawMessage }
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []string
	var walk func([]json.RawMessage) error
	walk = func(ps []json.RawMessage) error {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			for _, t := range p.Targets {
				if t.Expr != "" {
					out = append(out, t.Expr)
				}
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(d.Panels)
}

// query runs an instant query and returns its result's series.
func query(prom, expr string) ([]json.RawMessage, error) {
	var body struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	if err := getJSON("http://"+prom+"/api/v1/query?query="+url.QueryEscape(expr), &body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, body.Error)
	}
	if body.Data.ResultType == "scalar" {
		return []json.RawMessage{body.Data.Result}, nil
	}
	var series []json.RawMessage
	return series, json.Unmarshal(body.Data.Result, &series)
}

// rulesHealthy: every rule loaded has been evaluated, without error.
func rulesHealthy(prom string) (int, error) {
	var body struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct {
					Name, Health, LastError string
				}
			}
		}
	}
	if err := getJSON("http://"+prom+"/api/v1/rules", &body); err != nil {
		return 0, err
	}
	n := 0
	var bad []string
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s/%s %s %s", g.Name, r.Name, r.Health, r.LastError))
			}
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("Prometheus has no rules loaded")
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return n, fmt.Errorf("%d/%d rules not evaluated ok: %s", len(bad), n, strings.Join(bad, ", "))
	}
	return n, nil
}

// alertActive: whether Alertmanager holds the alert, firing, as want says.
func alertActive(am, name string, want bool) error {
	var alerts []struct {
		Labels map[string]string
		Status struct{ State string }
		EndsAt time.Time
	}
	if err := getJSON("http://"+am+"/api/v2/alerts?filter="+url.QueryEscape(`alertname="`+name+`"`), &alerts); err != nil {
		return err
	}
	active := false
	for _, a := range alerts {
		active = active || (a.Status.State == "active" && a.EndsAt.After(time.Now()))
	}
	if active != want {
		return fmt.Errorf("%s active in Alertmanager: %v, want %v (%d alerts)", name, active, want, len(alerts))
	}
	return nil
}

func getJSON(u string, v any) error {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}
