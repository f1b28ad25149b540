package svc_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/svc"
	"github.com/loopstock/loopstock/internal/testenv"
)

// Every service's /metrics carries the Go and process collectors' series:
// the alerts on restarts read process_start_time_seconds.
func TestMetricsHaveTheGoAndProcessCollectors(t *testing.T) {
	rt, err := svc.Start("thing", cliflags.Common{ConsulAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:0"}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	rec := httptest.NewRecorder()
	rt.Mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	start, err := testenv.SeriesValue(families, "process_start_time_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if since := time.Since(time.Unix(int64(start), 0)); since < -time.Minute || since > time.Hour {
		t.Errorf("process_start_time_seconds %v is %s from now: not this process's start", start, since)
	}
	for _, series := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if v, err := testenv.SeriesValue(families, series); err != nil || v <= 0 {
			t.Errorf("%s = %v (%v); want a positive value", series, v, err)
		}
	}
}
