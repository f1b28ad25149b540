package testenv

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric is the value of one series (its name and labels, as exposed:
// `x_total{reason="y"}`, `x_seconds_bucket{le="0.25"}`, `x_seconds_count`)
// on base's /metrics, read with expfmt; the test fails without it.
func Metric(t testing.TB, base, series string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", base, err)
	}
	v, err := SeriesValue(families, series)
	if err != nil {
		t.Fatalf("%s/metrics: %v", base, err)
	}
	return v
}

// SeriesValue finds series (as Metric names it) in parsed families. A
// histogram's or summary's _count, _sum and _bucket{le} are series too.
func SeriesValue(families map[string]*dto.MetricFamily, series string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := p.TextToMetricFamilies(strings.NewReader(series + " 0\n"))
	if err != nil || len(parsed) != 1 {
		return 0, fmt.Errorf("%q is not a series name with labels: %v", series, err)
	}
	var name string
	var want map[string]string
	for n, f := range parsed {
		name, want = n, labels(f.Metric[0])
	}
	if f, ok := families[name]; ok {
		for _, m := range f.Metric {
			if sameLabels(labels(m), want) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), nil
				case m.Gauge != nil:
					return m.Gauge.GetValue(), nil
				case m.Untyped != nil:
					return m.Untyped.GetValue(), nil
				}
			}
		}
		return 0, fmt.Errorf("no series %s", series)
	}
	for _, suffix := range []string{"_count", "_sum", "_bucket"} {
		f, ok := families[strings.TrimSuffix(name, suffix)]
		if !ok || !strings.HasSuffix(name, suffix) {
			continue
		}
		le, hasLE := want["le"]
		if suffix == "_bucket" {
			delete(want, "le")
		}
		for _, m := range f.Metric {
			if !sameLabels(labels(m), want) {
				continue
			}
			switch {
			case suffix == "_count" && m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), nil
			case suffix == "_count" && m.Summary != nil:
				return float64(m.Summary.GetSampleCount()), nil
			case suffix == "_sum" && m.Histogram != nil:
				return m.Histogram.GetSampleSum(), nil
			case suffix == "_sum" && m.Summary != nil:
				return m.Summary.GetSampleSum(), nil
			case suffix == "_bucket" && hasLE && m.Histogram != nil:
				bound, err := strconv.ParseFloat(le, 64)
				if err != nil {
					return 0, fmt.Errorf("%s: le=%q is not a number", series, le)
				}
				for _, b := range m.Histogram.Bucket {
					if b.GetUpperBound() == bound {
						return float64(b.GetCumulativeCount()), nil
					}
				}
			}
		}
	}
	return 0, fmt.Errorf("no series %s", series)
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
