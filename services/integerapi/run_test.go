package integerapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// integer-api as the binary runs it, on a real Consul and Redis: it
// registers, serves, counts its requests on /metrics, and stops cleanly.
func TestRunServesAndStopsCleanly(t *testing.T) {
	r := newStoreRig(t, 100)
	put(t, r.store, 0, 1, pc(0, 9, 100))
	o := NewOptions()
	o.ConsulAddr, o.HTTPAddr, o.ServiceID = r.consul.HTTPAddr, testenv.Addr(testenv.FreePort(t)), "integer-api-test"
	o.LogLevel, o.LogFormat = "info", "text"
	o.WriteToken, o.KeyPrefix, o.ShutdownDelay = token, "test", 100*time.Millisecond
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, logging.Discard()) }()
	r.consul.WaitPassing(t, Name, 1, 20*time.Second)

	base := "http://" + o.HTTPAddr
	var ws []windowapi.Window
	if code, err := testenv.GetJSON(base+"/v1/integers", &ws); code != 200 || err != nil || len(ws) != 1 || ws[0].Sum != 100 {
		t.Fatalf("GET /v1/integers: %d %v %+v", code, err, ws)
	}
	testenv.GetJSON(base+"/v1/integers?limit=0", nil)
	req, _ := http.NewRequest("GE", base+"/v1/integers", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("GE /v1/integers: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for series, want := range map[string]float64{
		`integer_api_http_requests_total{code="200",route="/v1/integers"}`:      1,
		`integer_api_http_requests_total{code="400",route="/v1/integers"}`:      1,
		`integer_api_http_requests_total{code="405",route="/v1/integers"}`:      1,
		`integer_api_http_request_duration_seconds_count{route="/v1/integers"}`: 3,
		"integer_api_store_errors_total":                                        0,
	} {
		if got := testenv.Metric(t, base, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a SIGTERM-like stop returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("integer-api did not stop")
	}
	if s, _, err := r.consul.Client.Agent().Service(o.ServiceID, nil); err == nil && s != nil {
		t.Error("still registered in consul after the stop")
	}
	if _, err := http.Get(base + "/health"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("still serving after the stop: %v", err)
	}
}
