package bench

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// genArgs run a generator in load mode: perSlot integers every 1 ms.
func genArgs(perSlot, maxGens int) []string {
	return []string{"--interval", "1ms", "--per-slot", strconv.Itoa(perSlot), "--max-generators", strconv.Itoa(maxGens),
		"--batch-max", "4096", "--batch-wait", "20ms", "--lease-ahead", "500ms", "--queue-size", "1000000", "--log-level", "info"}
}

func httpBase(p *testenv.Proc) string { return "http://" + p.Flag("--http-addr") }

// sumMetric adds series over procs.
func sumMetric(t *testing.T, procs []*testenv.Proc, series string) float64 {
	var v float64
	for _, p := range procs {
		v += testenv.Metric(t, httpBase(p), series)
	}
	return v
}

// busyCores is the machine's non-idle CPU time, in core-seconds, from /proc/stat.
func busyCores(t *testing.T) float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:]
	var busy float64
	for i, s := range f {
		v, _ := strconv.ParseFloat(s, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy / 100
}

type genStep struct {
	gens        int
	offered     float64 // integers/s the generators drew
	rate        float64 // integers/s nsqd acknowledged
	cores       float64 // cores busy on the machine
	genCores    float64 // of which the generators
	nsqdCores   float64 // of which nsqd
	notPubShare float64 // share of drawn integers given up (queue full)
}

type capacityResult struct {
	perSlot   int
	steps     []genStep
	peak      genStep
	genTop    []string // top frames of a generator's CPU profile at the peak
	nsqdTop   []string // and nsqd's
	backlog   float64  // integers in the averager's channel when the averager started
	backlogMB float64  // bytes of the channel's messages
	drainRate float64  // integers/s from the first consumed to the last stored
	drainTook time.Duration
	drainWins int
	exact     bool
	detail    string
	avgRSSMB  float64 // the averager's peak RSS while draining
	inFlight  int
	avgCores  float64 // cores the averager used while draining
	nsqdCores float64 // and nsqd
}

// capacity measures generation → nsqd at saturation (generators added until
// the published rate stops growing), then keeps publishing with no averager
// until the backlog holds at least 10 million integers, and times one
// averager draining it, exact against the audit consumer.
func capacity(t *testing.T, backlogTarget float64) capacityResult {
	const perSlot, maxGens = 1000, 8
	res := capacityResult{perSlot: perSlot, inFlight: 2500}
	s := testenv.StartStack(t, testenv.StackOptions{APIs: 1, Channels: []string{"audit"}})
	profDir := filepath.Join(t.TempDir())
	var prevRate float64
	for n := 1; n <= maxGens; n++ {
		g := s.AddGenerator(t, genArgs(perSlot, maxGens)...)
		s.Consul.WaitPassing(t, "integer-gen", n, 60*time.Second)
		testenv.Eventually(t, 60*time.Second, "the new generator to publish", func() bool {
			return testenv.Metric(t, httpBase(g), "integer_gen_integers_published_total") > 0
		})
		time.Sleep(3 * time.Second) // warm-up: a fixed period, not a synchronisation
		cpu0 := map[*testenv.Proc]time.Duration{}
		for _, p := range append([]*testenv.Proc{s.NSQ.NSQD}, s.Generators...) {
			cpu0[p] = cpuTime(t, p)
		}
		b0, d0, p0, np0, t0 := busyCores(t), sumMetric(t, s.Generators, "integer_gen_integers_generated_total"),
			sumMetric(t, s.Generators, "integer_gen_integers_published_total"),
			sumMetric(t, s.Generators, `integer_gen_integers_not_published_total{reason="queue_full"}`), time.Now()
		// A CPU profile of the first generator and of nsqd over the middle of the period.
		profs := map[string]chan []string{"gen": make(chan []string, 1), "nsqd": make(chan []string, 1)}
		go func() {
			profs["gen"] <- topFrames(httpBase(s.Generators[0]), filepath.Join(profDir, fmt.Sprintf("gen-%d.pprof", n)))
		}()
		go func() {
			profs["nsqd"] <- topFrames("http://"+s.NSQ.NSQDHTTP, filepath.Join(profDir, fmt.Sprintf("nsqd-%d.pprof", n)))
		}()
		time.Sleep(10 * time.Second)
		b1, d1, p1, np1, t1 := busyCores(t), sumMetric(t, s.Generators, "integer_gen_integers_generated_total"),
			sumMetric(t, s.Generators, "integer_gen_integers_published_total"),
			sumMetric(t, s.Generators, `integer_gen_integers_not_published_total{reason="queue_full"}`), time.Now()
		el := t1.Sub(t0).Seconds()
		st := genStep{gens: n, offered: (d1 - d0) / el, rate: (p1 - p0) / el, cores: (b1 - b0) / el,
			nsqdCores: (cpuTime(t, s.NSQ.NSQD) - cpu0[s.NSQ.NSQD]).Seconds() / el}
		if d1 > d0 {
			st.notPubShare = (np1 - np0) / (d1 - d0)
		}
		for _, p := range s.Generators {
			st.genCores += (cpuTime(t, p) - cpu0[p]).Seconds() / el
		}
		genTop, nsqdTop := <-profs["gen"], <-profs["nsqd"]
		fmt.Printf("generation: %+v\n", st)
		res.steps = append(res.steps, st)
		if st.rate > res.peak.rate {
			res.peak, res.genTop, res.nsqdTop = st, genTop, nsqdTop
		}
		if n > 1 && st.rate < prevRate*1.1 {
			break // stopped growing
		}
		prevRate = st.rate
	}
	// The backlog: with every generator stopped, both channels are emptied
	// (so that they hold the same messages), then as many generators as at
	// the peak publish until the averager's channel holds enough.
	for _, g := range s.Generators {
		g.Stop(15 * time.Second)
	}
	// Emptied only once the topic copied everything to both: otherwise a
	// message copied between the two empties would be in one only.
	testenv.Eventually(t, time.Minute, "the topic to copy its messages to its channels", func() bool {
		return s.NSQ.TopicDepth(t, testenv.Topic) == 0
	})
	for _, ch := range []string{"averager", "audit"} {
		postOK(t, "http://"+s.NSQ.NSQDHTTP+"/channel/empty?topic="+testenv.Topic+"&channel="+ch)
	}
	var backlogGens []*testenv.Proc
	for range res.peak.gens {
		backlogGens = append(backlogGens, s.AddGenerator(t, genArgs(perSlot, maxGens)...))
	}
	s.Consul.WaitPassing(t, "integer-gen", len(backlogGens), 60*time.Second) // the stopped ones deregistered
	testenv.Eventually(t, 5*time.Minute, "the backlog to reach its size", func() bool {
		return sumMetric(t, backlogGens, "integer_gen_integers_published_total") >= backlogTarget
	})
	for _, g := range backlogGens {
		g.Stop(15 * time.Second)
	}
	ch := s.NSQ.Channel(t, testenv.Topic, "averager")
	// The audit counts the same messages on its own channel, before any averager runs.
	audit := startLiteAudit(t, s.NSQ.NSQDTCP)
	testenv.Eventually(t, 5*time.Minute, "the audit to read its channel", func() bool {
		a := s.NSQ.Channel(t, testenv.Topic, "audit")
		return a.Depth == 0 && a.InFlight == 0
	})
	var total int64
	seen := audit.windows()
	for _, w := range seen {
		total += w.Count
	}
	res.backlog, res.backlogMB = float64(total), float64(total)*12/(1<<20) // 12 bytes an integer on the wire
	fmt.Printf("backlog: %d integers in %d messages\n", total, ch.Depth)

	// One averager drains it.
	avg := s.AddAverager(t, "--msg-timeout", "60s", "--max-in-flight", strconv.Itoa(res.inFlight), "--log-level", "info")
	s.Consul.WaitPassing(t, "integeraverage-cal", 1, 60*time.Second)
	base := httpBase(avg)
	var first, done time.Time
	var avgCPU, nsqdCPU time.Duration
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if first.IsZero() && testenv.Metric(t, base, "integeraverage_cal_messages_consumed_total") > 0 {
			first, avgCPU, nsqdCPU = time.Now(), cpuTime(t, avg), cpuTime(t, s.NSQ.NSQD)
		}
		res.avgRSSMB = max(res.avgRSSMB, rss(t, avg))
		if testenv.Metric(t, base, "integeraverage_cal_integers_counted_total") >= float64(total) {
			done = time.Now()
			res.avgCores = (cpuTime(t, avg) - avgCPU).Seconds() / done.Sub(first).Seconds()
			res.nsqdCores = (cpuTime(t, s.NSQ.NSQD) - nsqdCPU).Seconds() / done.Sub(first).Seconds()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if done.IsZero() {
		res.detail = "the averager did not count the whole backlog within 5 minutes"
		return res
	}
	res.drainTook = done.Sub(first)
	res.drainRate = float64(total) / res.drainTook.Seconds()
	res.exact, res.drainWins, res.detail = compareWithAudit(t, "http://"+s.APIAddr, seen, 30*time.Second)
	fmt.Printf("drain: %d integers in %s: %.0f/s, %d windows exact=%v %s\n", total, res.drainTook, res.drainRate, res.drainWins, res.exact, res.detail)
	return res
}

func postOK(t *testing.T, url string) {
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
}

// compareWithAudit waits until every window the audit saw is served with
// the same count and sum.
func compareWithAudit(t *testing.T, api string, seen map[int64]testenv.Totals, wait time.Duration) (bool, int, string) {
	deadline := time.Now().Add(wait)
	for {
		served := servedWindows(t, api)
		bad, first := 0, ""
		for start, a := range seen {
			if w, ok := served[start]; !ok || w.Count != a.Count || w.Sum != a.Sum {
				bad++
				first = fmt.Sprintf("window %s: served count %d sum %d, audit count %d sum %d",
					time.UnixMilli(start).UTC().Format(time.RFC3339), w.Count, w.Sum, a.Count, a.Sum)
			}
		}
		if bad == 0 && len(seen) > 0 {
			return true, len(seen), ""
		}
		if time.Now().After(deadline) {
			return false, len(seen), fmt.Sprintf("%d of %d windows differ from the audit (%s)", bad, len(seen), first)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type e2eStep struct {
	gens             int
	published        float64 // integers/s into nsqd
	counted          float64 // integers/s stored
	depthGrowth      int64   // messages the averager's channel grew by
	messages         int64   // messages published meanwhile
	keptUp           bool
	cores, avgCores  float64
	genCores, others float64
	nsqdCores        float64
}

type e2eResult struct {
	perSlot int
	steps   []e2eStep
	best    e2eStep
	windows int
	exact   bool
	detail  string
}

// endToEnd adds generators to a running pipeline until it stops keeping up
// (the averager's channel grows) or generation stops growing, and reports
// the highest load it kept up with; then every window is checked exact.
func endToEnd(t *testing.T) e2eResult {
	const perSlot, maxGens = 400, 16
	res := e2eResult{perSlot: perSlot}
	s := testenv.StartStack(t, testenv.StackOptions{APIs: 1, Averagers: 1, Channels: []string{"audit"},
		AvgArgs: []string{"--msg-timeout", "60s", "--log-level", "info"}})
	s.WaitHealthy(t, 60*time.Second)
	avg := httpBase(s.Averagers[0])
	var prevPub float64
	for n := 1; n <= maxGens; n++ {
		g := s.AddGenerator(t, genArgs(perSlot, maxGens)...)
		s.Consul.WaitPassing(t, "integer-gen", n, 60*time.Second)
		testenv.Eventually(t, 60*time.Second, "the new generator to publish", func() bool {
			return testenv.Metric(t, httpBase(g), "integer_gen_integers_published_total") > 0
		})
		time.Sleep(5 * time.Second) // warm-up: a fixed period, not a synchronisation
		cpu0 := map[*testenv.Proc]time.Duration{s.Averagers[0]: cpuTime(t, s.Averagers[0]), s.NSQ.NSQD: cpuTime(t, s.NSQ.NSQD)}
		for _, p := range s.Generators {
			cpu0[p] = cpuTime(t, p)
		}
		ch0, b0 := s.NSQ.Channel(t, testenv.Topic, "averager"), busyCores(t)
		p0, c0, t0 := sumMetric(t, s.Generators, "integer_gen_integers_published_total"), testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total"), time.Now()
		time.Sleep(10 * time.Second)
		ch1, b1 := s.NSQ.Channel(t, testenv.Topic, "averager"), busyCores(t)
		p1, c1, t1 := sumMetric(t, s.Generators, "integer_gen_integers_published_total"), testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total"), time.Now()
		el := t1.Sub(t0).Seconds()
		st := e2eStep{gens: n, published: (p1 - p0) / el, counted: (c1 - c0) / el, depthGrowth: ch1.Depth - ch0.Depth,
			messages: ch1.Messages - ch0.Messages, cores: (b1 - b0) / el,
			avgCores:  (cpuTime(t, s.Averagers[0]) - cpu0[s.Averagers[0]]).Seconds() / el,
			nsqdCores: (cpuTime(t, s.NSQ.NSQD) - cpu0[s.NSQ.NSQD]).Seconds() / el}
		for _, p := range s.Generators {
			st.genCores += (cpuTime(t, p) - cpu0[p]).Seconds() / el
		}
		st.others = st.cores - st.avgCores - st.genCores - st.nsqdCores
		// Keeping up: the channel's backlog grew by no more than 2 % of
		// what was published (messages in flight to the averager are not in it).
		st.keptUp = float64(st.depthGrowth) <= max(20, 0.02*float64(st.messages))
		fmt.Printf("end to end: %+v\n", st)
		res.steps = append(res.steps, st)
		if !st.keptUp {
			break
		}
		if st.published > res.best.published {
			res.best = st
		}
		if n > 1 && st.published < prevPub*1.05 {
			break // generation stopped growing: more generators add no load
		}
		prevPub = st.published
	}
	for _, g := range s.Generators {
		g.Stop(15 * time.Second)
	}
	audit := startLiteAudit(t, s.NSQ.NSQDTCP)
	testenv.Eventually(t, 5*time.Minute, "the audit and the averager to read their channels", func() bool {
		a, v := s.NSQ.Channel(t, testenv.Topic, "audit"), s.NSQ.Channel(t, testenv.Topic, "averager")
		return a.Depth == 0 && a.InFlight == 0 && v.Depth == 0 && v.InFlight == 0
	})
	res.exact, res.windows, res.detail = compareWithAudit(t, "http://"+s.APIAddr, audit.windows(), 60*time.Second)
	fmt.Printf("end to end: best %+v, %d windows exact=%v %s\n", res.best, res.windows, res.exact, res.detail)
	return res
}

// topFrames takes a 5 s CPU profile from base's /debug/pprof and returns
// its top frames by own time.
func topFrames(base, file string) []string {
	const seconds = 5
	c := &http.Client{Timeout: time.Duration(seconds+10) * time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds))
	if err != nil {
		return []string{"profile: " + err.Error()}
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return []string{err.Error()}
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return []string{err.Error()}
	}
	f.Close()
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=8", file).CombinedOutput()
	if err != nil {
		return []string{"pprof: " + err.Error()}
	}
	var top []string
	in := false
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
			in = true
			continue
		}
		if in && strings.TrimSpace(l) != "" {
			fl := strings.Fields(l)
			if len(fl) >= 6 {
				top = append(top, fmt.Sprintf("%s %s", fl[1], strings.Join(fl[5:], " ")))
			}
		}
	}
	return top
}
