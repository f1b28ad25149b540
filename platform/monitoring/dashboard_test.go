package monitoring

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a row's panels
}

// Grafana's interval variables stand in for durations at query time.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")

// Every query of the Grafana dashboard is PromQL that Prometheus parses: a
// typo shows as an empty panel, not as an error, in Grafana.
func TestDashboardQueriesParse(t *testing.T) {
	const path = dir + "loopstock-dashboard.json"
	var dash struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(read(t, path), &dash); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	p := parser.NewParser(parser.Options{})
	queries := 0
	var check func([]panel)
	check = func(panels []panel) {
		for _, pn := range panels {
			for _, tg := range pn.Targets {
				queries++
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q, query %s is empty", path, pn.Title, tg.RefID)
					continue
				}
				if _, err := p.ParseExpr(grafanaIntervals.Replace(tg.Expr)); err != nil {
					t.Errorf("%s: panel %q, query %s %q: %v", path, pn.Title, tg.RefID, tg.Expr, err)
				}
			}
			check(pn.Panels)
		}
	}
	check(dash.Panels)
	if queries == 0 {
		t.Errorf("%s: no panel has a query", path)
	}
}
