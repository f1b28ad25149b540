package testenv

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

func TestMetricReadsSeriesOfEveryKind(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := promauto.With(reg)
	f.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"reason"}).WithLabelValues("y").Add(3)
	f.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"}).Set(-2)
	h := f.NewHistogram(prometheus.HistogramOpts{Name: "lag_seconds", Help: "l", Buckets: []float64{0.25, 1}})
	for _, v := range []float64{0.1, 0.5, 2} {
		h.Observe(v)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	for series, want := range map[string]float64{
		`x_total{reason="y"}`: 3, "g": -2, "lag_seconds_count": 3, "lag_seconds_sum": 2.6,
		`lag_seconds_bucket{le="0.25"}`: 1, `lag_seconds_bucket{le="1"}`: 2,
	} {
		if got := Metric(t, srv.URL, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	fams, err := prometheus.Gatherer(reg).Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, missing := range []string{`x_total{reason="z"}`, "x_total", `lag_seconds_bucket{le="0.5"}`, "nothing", "not a {series"} {
		if _, err := SeriesValue(byName, missing); err == nil {
			t.Errorf("%s: found, want an error", missing)
		}
	}
}
