package integergen

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/loopstock/loopstock/internal/slotlease"
)

type metrics struct {
	generated, published, publishFailures, publishRetries prometheus.Counter
	notPublished                                          *prometheus.CounterVec
	paused, missed, uncoordinated                         prometheus.Counter
	publishSeconds                                        prometheus.Histogram
	batchSize                                             prometheus.Histogram
}

// Reasons an integer was not published (label of integers_not_published_total).
const (
	reasonUnacknowledged = "unacknowledged"
	reasonQueueFull      = "queue_full"
	reasonShutdown       = "shutdown"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "integer_gen", Name: name, Help: help})
	}
	m := &metrics{
		generated:       c("integers_generated_total", "Integers drawn, one per slot while coordinated."),
		published:       c("integers_published_total", "Integers acknowledged by nsqd."),
		publishFailures: c("publish_failures_total", "NSQ publishes that failed or were not acknowledged in time."),
		publishRetries:  c("publish_retries_total", "NSQ publishes retried after a failure."),
		paused:          c("slots_paused_total", "Slots skipped because no coordination lease covered them (--on-coordination-loss=pause)."),
		missed:          c("slots_missed_total", "Slots skipped because the process woke up too late for them."),
		uncoordinated:   c("integers_uncoordinated_total", "Integers emitted without a coordination lease (--on-coordination-loss=mark)."),
		notPublished: f.NewCounterVec(prometheus.CounterOpts{Namespace: "integer_gen", Name: "integers_not_published_total",
			Help: "Integers given up without an nsqd acknowledgement, by reason."}, []string{"reason"}),
		publishSeconds: f.NewHistogram(prometheus.HistogramOpts{Namespace: "integer_gen", Name: "publish_duration_seconds",
			Help: "Time from publish to nsqd's acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Namespace: "integer_gen", Name: "batch_integers",
			Help: "Integers per NSQ message.", Buckets: prometheus.ExponentialBuckets(1, 4, 7)}),
	}
	for _, r := range []string{reasonUnacknowledged, reasonQueueFull, reasonShutdown} {
		m.notPublished.WithLabelValues(r)
	}
	return m
}

// coordination is what the metrics read of the coordinator.
type coordination interface {
	Stats() slotlease.Stats
	State() (index int, hw int64)
}

func registerCoordinationMetrics(reg prometheus.Registerer, c coordination) {
	auto := promauto.With(reg)
	counter := func(name, help string, f func(slotlease.Stats) uint64) {
		auto.NewCounterFunc(prometheus.CounterOpts{Namespace: "integer_gen", Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) })
	}
	counter("coordination_round_trips_total", "Requests sent to Consul by the no-collision coordination.", func(s slotlease.Stats) uint64 { return s.RoundTrips })
	counter("coordination_lease_extensions_total", "Coordination leases extended.", func(s slotlease.Stats) uint64 { return s.Extends })
	counter("coordination_leases_lost_total", "Coordination leases lost (session ended or lock taken).", func(s slotlease.Stats) uint64 { return s.Lost })
	auto.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "integer_gen", Name: "coordination_index",
		Help: "Generator index held (-1: none, emission paused)."}, func() float64 { i, _ := c.State(); return float64(i) })
}

type noCoordination struct{}

func (noCoordination) Stats() slotlease.Stats { return slotlease.Stats{} }
func (noCoordination) State() (int, int64)    { return -1, 0 }

// DescribeMetrics registers every metric of integer-gen on reg, with
// nothing behind them: the list the dashboard's queries are checked against.
func DescribeMetrics(reg prometheus.Registerer) {
	newMetrics(reg)
	registerCoordinationMetrics(reg, noCoordination{})
}
