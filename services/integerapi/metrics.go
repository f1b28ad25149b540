package integerapi

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	// children caches the per-route series: looking them up by label
	// values on every request costs more than the request itself.
	children                       sync.Map // routeCode → *routeSeries
	requests                       *prometheus.CounterVec
	latency                        *prometheus.HistogramVec
	serveLag                       prometheus.Histogram
	storeErrors, staleWrites       prometheus.Counter
	unreplicated                   prometheus.Counter
	windowsCreated, windowsAmended prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	ns := "integer_api"
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total",
			Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}, []string{"route"}),
		serveLag: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "window_serve_lag_seconds",
			Help:    "Time from a window's end to the first read here that found it in the store (freshness as clients see it); counted while reads come at least once a second.",
			Buckets: []float64{0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.55, 0.6, 0.7, 0.8, 1, 1.5, 2, 3, 5, 10, 30}}),
		storeErrors:    c("store_errors_total", "Requests that failed because the store (Redis) failed."),
		staleWrites:    c("stale_writes_total", "Window writes refused for a stale leader fence."),
		unreplicated:   c("unreplicated_writes_total", "Window writes that reached the Redis primary but not enough replicas in time (WAIT), answered 503."),
		windowsCreated: c("windows_created_total", "Windows stored for the first time."),
		windowsAmended: c("windows_amended_total", "Stored windows amended with late integers."),
	}
}

// DescribeMetrics registers every metric of integer-api on reg: the list
// the dashboard's queries are checked against.
func DescribeMetrics(reg prometheus.Registerer) { newMetrics(reg) }

type routeCode struct {
	route string
	code  int
}

type routeSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	k := routeCode{route, code}
	v, ok := m.children.Load(k)
	if !ok {
		v, _ = m.children.LoadOrStore(k, &routeSeries{
			requests: m.requests.WithLabelValues(route, strconv.Itoa(code)),
			latency:  m.latency.WithLabelValues(route),
		})
	}
	s := v.(*routeSeries)
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}
