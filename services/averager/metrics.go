package averager

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/wire"
)

// averagerReasons are the rejection reasons beyond the wire format's.
var averagerReasons = []string{"too_late", "future", "seq_conflict"}

type metrics struct {
	consumed, deduplicated, late, uncoordinated     prometheus.Counter
	integersCounted, windowsWritten, windowsAmended prometheus.Counter
	windowsEarly                                    prometheus.Counter
	storeErrors, collisions, nsqdRefused            prometheus.Counter
	rejected, deadLettered                          *prometheus.CounterVec
	writeLag                                        prometheus.Histogram
	leader, lastAverage, lastCount, lastEnd         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	ns := "integeraverage_cal"
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	m := &metrics{
		consumed:        c("messages_consumed_total", "NSQ messages received (including redeliveries)."),
		deduplicated:    c("integers_deduplicated_total", "Integers skipped because they were already counted (redelivery, duplicate publish)."),
		late:            c("integers_late_total", "Integers that arrived after their window's grace: they amend the stored window."),
		uncoordinated:   c("integers_uncoordinated_total", "Integers flagged as emitted without coordination."),
		integersCounted: c("integers_counted_total", "Integers added to stored windows."),
		windowsWritten:  c("windows_written_total", "Windows stored for the first time."),
		windowsAmended:  c("windows_amended_total", "Stored windows amended with late integers."),
		windowsEarly: c("windows_written_by_watermark_total",
			"Windows stored for the first time before their grace ended, every live generator having passed their end."),
		storeErrors: c("store_errors_total", "Window writes to integer-api that failed (retried)."),
		collisions:  c("slot_collisions_total", "Integers equal to another generator's in the same slot (must stay 0)."),
		nsqdRefused: c("nsqd_refused_total", "nsqd that nsqlookupd named and Consul does not list, not connected to (with TLS; counted at every nsqlookupd poll)."),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_rejected_total",
			Help: "Messages (or their late or future parts) rejected, by reason."}, []string{"reason"}),
		deadLettered: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_dead_lettered_total",
			Help: "Rejected messages published to the dead-letter topic, by reason."}, []string{"reason"}),
		writeLag: f.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "window_write_lag_seconds",
			Help: "Time from a window's end to its successful write.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		leader: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "leader",
			Help: "1 while this instance is the active averager, 0 on standby."}),
		lastAverage: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_window_average",
			Help: "Average of the newest window this instance stored."}),
		lastCount: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_window_integers",
			Help: "Integers in the newest window this instance stored."}),
		lastEnd: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_window_end_timestamp_seconds",
			Help: "End of the newest window this instance stored (Unix seconds): freshness is time() minus this."}),
	}
	for _, r := range wire.Reasons {
		m.rejected.WithLabelValues(string(r))
		m.deadLettered.WithLabelValues(string(r))
	}
	for _, r := range averagerReasons {
		m.rejected.WithLabelValues(r)
		m.deadLettered.WithLabelValues(r)
	}
	return m
}

// DescribeMetrics registers every metric of integeraverage-cal on reg: the
// list the dashboard's queries are checked against.
func DescribeMetrics(reg prometheus.Registerer) {
	newMetrics(reg)
	reg.MustRegister(newNSQDCollector(nil, NewOptions(), nsqtls.Client{}, nil)) // Describe needs neither watch nor log
}
