package averager

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/testenv"
)

// The nsqd series, read from real nsqd found through Consul: the backlog
// of a channel nobody consumes, the counters of a consumer that requeues
// and lets a message time out, and an nsqd that hangs or dies (only its
// _up turns 0, logged once per run of failures, and it stays listed while
// Consul still has it, failing).
func TestNSQDSeriesComeFromEachNSQDAtScrapeTime(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and nsqd")
	}
	c := testenv.StartConsul(t)
	a, b := testenv.StartNSQ(t), testenv.StartNSQ(t)
	a.RegisterIn(t, c)
	b.RegisterIn(t, c)
	c.WaitPassing(t, "nsqd", 2, 20*time.Second)

	o := NewOptions()
	const n = 25
	a.CreateChannel(t, o.Topic, o.Channel)
	publish(t, a, o.Topic, n)
	publish(t, a, o.DeadLetterTopic, 3) // a topic without channels keeps them

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, hook := logtest.NewNullLogger()
	log := logrus.NewEntry(logger)
	w := discovery.FollowAll(ctx, c.Client, discovery.NSQD("nsqd"), log)
	col := newNSQDCollector(w, o, nsqtls.Client{}, log)
	col.timeout = 500 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	testenv.Eventually(t, 10*time.Second, "both nsqd in the watch", func() bool { l, _, _ := w.Current(); return len(l) == 2 })

	ch := func(name, nsqd string) string {
		return fmt.Sprintf(`integeraverage_cal_nsqd_%s{nsqd=%q,topic=%q,channel=%q}`, name, nsqd, o.Topic, o.Channel)
	}
	topic := func(nsqd, topic string) string {
		return fmt.Sprintf(`integeraverage_cal_nsqd_topic_depth{nsqd=%q,topic=%q}`, nsqd, topic)
	}
	up := func(nsqd string) string { return fmt.Sprintf(`integeraverage_cal_nsqd_up{nsqd=%q}`, nsqd) }

	f := scrape(t, srv.URL)
	expect(t, f, map[string]float64{
		ch("channel_depth", a.NSQDHTTP): n, ch("channel_in_flight", a.NSQDHTTP): 0,
		ch("channel_requeued_total", a.NSQDHTTP): 0, ch("channel_timed_out_total", a.NSQDHTTP): 0,
		topic(a.NSQDHTTP, o.Topic): 0, topic(a.NSQDHTTP, o.DeadLetterTopic): 3, up(a.NSQDHTTP): 1,
		topic(b.NSQDHTTP, o.Topic): 0, topic(b.NSQDHTTP, o.DeadLetterTopic): 0, up(b.NSQDHTTP): 1,
	})
	if v, err := testenv.SeriesValue(f, ch("channel_depth", b.NSQDHTTP)); err == nil {
		t.Errorf("nsqd %s has no channel %s, yet its depth is reported (%v)", b.NSQDHTTP, o.Channel, v)
	}

	// A consumer requeues its first message and holds the next past its
	// timeout: each counter moves on its own.
	consume(t, a, o, func(delivery int, m *nsq.Message) {
		if delivery == 1 {
			m.Requeue(10 * time.Minute) // deferred: out of the depth, counted as requeued
		} // later ones are held until nsqd times them out
	})
	testenv.Eventually(t, 20*time.Second, "one requeue, a timeout and one message in flight", func() bool {
		f := scrape(t, srv.URL)
		r, _ := testenv.SeriesValue(f, ch("channel_requeued_total", a.NSQDHTTP))
		to, _ := testenv.SeriesValue(f, ch("channel_timed_out_total", a.NSQDHTTP))
		fl, _ := testenv.SeriesValue(f, ch("channel_in_flight", a.NSQDHTTP))
		d, _ := testenv.SeriesValue(f, ch("channel_depth", a.NSQDHTTP))
		return r == 1 && to >= 1 && fl == 1 && d == n-2
	})

	// A hung nsqd: its _up is 0 within the timeout, the other still reported.
	b.NSQD.Signal(syscall.SIGSTOP)
	began := time.Now()
	f = scrape(t, srv.URL)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a scrape with a hung nsqd took %s; the per-nsqd timeout is %s", took, col.timeout)
	}
	expect(t, f, map[string]float64{up(b.NSQDHTTP): 0, up(a.NSQDHTTP): 1, topic(a.NSQDHTTP, o.DeadLetterTopic): 3})
	b.NSQD.Signal(syscall.SIGCONT)
	testenv.Eventually(t, 10*time.Second, "the resumed nsqd up again", func() bool {
		v, _ := testenv.SeriesValue(scrape(t, srv.URL), up(b.NSQDHTTP))
		return v == 1
	})

	// A dead one: 0, and still 0 once Consul marks it failing.
	b.NSQD.Kill()
	testenv.Eventually(t, 10*time.Second, "Consul to mark the killed nsqd failing", func() bool {
		l, _, _ := w.Current()
		for _, i := range l {
			if addr, _ := i.MetaAddr("http_port"); addr == b.NSQDHTTP {
				return !i.Passing
			}
		}
		return false
	})
	for range 3 {
		expect(t, scrape(t, srv.URL), map[string]float64{up(b.NSQDHTTP): 0, up(a.NSQDHTTP): 1, topic(a.NSQDHTTP, o.DeadLetterTopic): 3})
	}

	// One line per run of failures (the hang, then the kill), one when it came back.
	var warned, recovered int
	for _, e := range hook.AllEntries() {
		switch {
		case e.Data["nsqd"] == a.NSQDHTTP:
			t.Errorf("logged about the healthy nsqd: %s", e.Message)
		case e.Level == logrus.WarnLevel && strings.Contains(e.Message, "did not answer"):
			warned++
		case e.Level == logrus.InfoLevel && strings.Contains(e.Message, "answers again"):
			recovered++
		}
	}
	if warned != 2 || recovered != 1 {
		t.Errorf("%d warnings and %d recoveries logged for the failing nsqd; want 2 (one per run of failures) and 1", warned, recovered)
	}
}

// publish puts count messages on topic in one MPUB.
func publish(t *testing.T, n *testenv.NSQ, topic string, count int) {
	t.Helper()
	body := strings.Repeat("m\n", count)
	resp, err := http.Post("http://"+n.NSQDHTTP+"/mpub?topic="+topic, "text/plain", strings.NewReader(strings.TrimSuffix(body, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("mpub %s: %s", topic, resp.Status)
	}
}

// consume connects a consumer (one message at a time, 1 s timeout) straight
// to n and hands it every delivery, numbered from 1. A message the handler
// leaves unanswered is finished at the end: go-nsq's Stop waits for them.
func consume(t *testing.T, n *testenv.NSQ, o Options, handle func(int, *nsq.Message)) {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 1
	cfg.MsgTimeout = time.Second
	consumer, err := nsq.NewConsumer(o.Topic, o.Channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	consumer.SetLogger(nil, nsq.LogLevelError)
	var mu sync.Mutex
	var delivered []*nsq.Message
	consumer.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		m.DisableAutoResponse()
		mu.Lock()
		delivered = append(delivered, m)
		i := len(delivered)
		mu.Unlock()
		handle(i, m)
		return nil
	}))
	if err := consumer.ConnectToNSQD(n.NSQDTCP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		for _, m := range delivered {
			if !m.HasResponded() {
				m.Finish() // nsqd refuses those it timed out; go-nsq counts the answer
			}
		}
		mu.Unlock()
		consumer.Stop()
		<-consumer.StopChan
	})
}

// scrape reads the collector's /metrics as Prometheus would; a scrape that
// fails (an error from a collector) fails the test.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return f
}

func expect(t *testing.T, f map[string]*dto.MetricFamily, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		got, err := testenv.SeriesValue(f, series)
		if err != nil {
			t.Errorf("%v", err)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}
