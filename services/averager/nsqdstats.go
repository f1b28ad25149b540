package averager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqtls"
)

// nsqdCollector exports what every nsqd registered in Consul says of the
// averager's topic and channel, read at scrape time: nsqd has no
// Prometheus endpoint, and its backlog is what the averager's alerts are
// about. A failing nsqd sets only its own _up to 0; the scrape goes on.
type nsqdCollector struct {
	nsqds   *discovery.Watch // every registered nsqd, passing or not
	topic   string
	channel string
	// depthOf are the topics whose depth is exported: the averager's and
	// its dead-letter topic.
	depthOf []string
	timeout time.Duration // per nsqd, for all its requests
	client  *http.Client
	auth    nsqtls.Client // with TLS: nsqd's HTTP API through nsqd-gate
	log     *logrus.Entry

	topicDepth, channelDepth, inFlight, requeued, timedOut, up *prometheus.Desc

	mu      sync.Mutex
	failing map[string]bool // nsqd → its last scrape failed (logged once per run of failures)
}

// nsqdStatsTimeout bounds one nsqd's answers in a scrape, well inside
// Prometheus's scrape timeout.
const nsqdStatsTimeout = 2 * time.Second

func newNSQDCollector(nsqds *discovery.Watch, o Options, auth nsqtls.Client, log *logrus.Entry) *nsqdCollector {
	ns := "integeraverage_cal_nsqd_"
	ch := []string{"nsqd", "topic", "channel"}
	return &nsqdCollector{
		nsqds: nsqds, topic: o.Topic, channel: o.Channel, depthOf: []string{o.Topic, o.DeadLetterTopic},
		timeout: nsqdStatsTimeout, client: auth.HTTPClient(0), auth: auth, log: log, failing: map[string]bool{},
		topicDepth: prometheus.NewDesc(ns+"topic_depth",
			"Messages an nsqd holds in the topic (memory and disk) not yet copied to its channels, read from its /stats at scrape time; 0 when it has no such topic.",
			[]string{"nsqd", "topic"}, nil),
		channelDepth: prometheus.NewDesc(ns+"channel_depth",
			"Messages waiting in the channel of an nsqd (memory and disk), read from its /stats at scrape time.", ch, nil),
		inFlight: prometheus.NewDesc(ns+"channel_in_flight",
			"Messages of the channel sent to a consumer and not yet finished or requeued.", ch, nil),
		requeued: prometheus.NewDesc(ns+"channel_requeued_total",
			"Messages the channel's consumers requeued (nsqd's requeue_count; restarts at 0 with nsqd).", ch, nil),
		timedOut: prometheus.NewDesc(ns+"channel_timed_out_total",
			"Messages nsqd took back from a consumer after --msg-timeout (nsqd's timeout_count; restarts at 0 with nsqd).", ch, nil),
		up: prometheus.NewDesc(ns+"up",
			"1 when the nsqd's /stats answered in this scrape, 0 when it did not; one series per nsqd registered in Consul.",
			[]string{"nsqd"}, nil),
	}
}

func (c *nsqdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.topicDepth, c.channelDepth, c.inFlight, c.requeued, c.timedOut, c.up} {
		ch <- d
	}
}

func (c *nsqdCollector) Collect(ch chan<- prometheus.Metric) {
	list, _, _ := c.nsqds.Current()
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for _, inst := range list {
		addr, ok := inst.MetaAddr(c.auth.PortMeta())
		// Without the port's meta nothing can be asked (the nsqd watch of the
		// dead-letter publisher logs the registration); the same address
		// twice would make the registry refuse the whole scrape.
		if !ok || seen[addr] {
			continue
		}
		seen[addr] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.collectOne(addr, ch)
		}()
	}
	wg.Wait()
	c.mu.Lock()
	for addr := range c.failing {
		if !seen[addr] {
			delete(c.failing, addr) // left Consul: a return starts a new run
		}
	}
	c.mu.Unlock()
}

// collectOne sends one nsqd's series; its _up is 0 when any of its
// requests failed (the series of those that answered are still sent).
func (c *nsqdCollector) collectOne(addr string, ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var failed error
	for _, topic := range c.depthOf {
		st, err := c.stats(ctx, addr, topic)
		if err != nil {
			failed = err
			break // a hung nsqd costs one timeout, not one per topic
		}
		var depth int64
		for _, tp := range st.Topics {
			if tp.Name != topic {
				continue
			}
			depth = tp.Depth
			for _, chs := range tp.Channels {
				if topic != c.topic || chs.Name != c.channel {
					continue
				}
				lv := []string{addr, topic, chs.Name}
				ch <- prometheus.MustNewConstMetric(c.channelDepth, prometheus.GaugeValue, float64(chs.Depth), lv...)
				ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(chs.InFlight), lv...)
				ch <- prometheus.MustNewConstMetric(c.requeued, prometheus.CounterValue, float64(chs.Requeued), lv...)
				ch <- prometheus.MustNewConstMetric(c.timedOut, prometheus.CounterValue, float64(chs.TimedOut), lv...)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.topicDepth, prometheus.GaugeValue, float64(depth), addr, topic)
	}
	up := 1.0
	if failed != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, addr)
	c.note(addr, failed)
}

// note logs the first failure of a run and the recovery that ends it:
// Prometheus scrapes every few seconds, a line per scrape would drown the log.
func (c *nsqdCollector) note(addr string, err error) {
	c.mu.Lock()
	was := c.failing[addr]
	if err != nil {
		c.failing[addr] = true
	} else {
		delete(c.failing, addr)
	}
	c.mu.Unlock()
	switch {
	case err != nil && !was:
		c.log.WithError(err).WithField("nsqd", addr).Warn("nsqd's /stats did not answer: integeraverage_cal_nsqd_up is 0 for it until it does (logged once)")
	case err == nil && was:
		c.log.WithField("nsqd", addr).Info("nsqd's /stats answers again")
	}
}

// nsqdStats is the part of nsqd's /stats?format=json that is exported.
type nsqdStats struct {
	Topics []struct {
		Name     string `json:"topic_name"`
		Depth    int64  `json:"depth"` // memory and backend (disk)
		Channels []struct {
			Name     string `json:"channel_name"`
			Depth    int64  `json:"depth"`
			InFlight int64  `json:"in_flight_count"`
			Requeued uint64 `json:"requeue_count"`
			TimedOut uint64 `json:"timeout_count"`
		} `json:"channels"`
	} `json:"topics"`
}

// stats asks one nsqd about one topic. No channel filter: with one, nsqd
// leaves the topic out when the channel is missing, and a topic without
// the averager's channel is exactly when its depth matters. Clients and
// memory are left out: they are large or cost nsqd a stop-the-world.
func (c *nsqdCollector) stats(ctx context.Context, addr, topic string) (nsqdStats, error) {
	var st nsqdStats
	u := c.auth.Scheme() + "://" + addr + "/stats?" + url.Values{"format": {"json"}, "topic": {topic},
		"include_clients": {"false"}, "include_mem": {"false"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("GET %s: %w", u, err)
	}
	return st, nil
}
