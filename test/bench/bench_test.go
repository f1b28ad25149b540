// Package bench measures the system against anchors, in one run on one
// machine, and writes docs/benchmarks.md (make bench). Numbers are reported,
// never asserted: the machine is shared and noisy, ratios are what count.
package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/window"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/wire"
)

// TestMain doubles as the static server the API is compared with: a
// separate process, like integer-api, so neither shares the load
// generator's process.
func TestMain(m *testing.M) {
	if file := os.Getenv("LOOPSTOCK_STATIC_BODY"); file != "" {
		body, err := os.ReadFile(file)
		if err != nil {
			panic(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		fmt.Println(ln.Addr().String())
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(body)
		}))
		return
	}
	os.Exit(m.Run())
}

// startStatic runs this test binary as a static server of body.
func startStatic(t *testing.T, body []byte) string {
	file := filepath.Join(t.TempDir(), "body.json")
	os.WriteFile(file, body, 0o644)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOOPSTOCK_STATIC_BODY="+file)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + strings.TrimSpace(addr)
}

func TestBench(t *testing.T) {
	out := os.Getenv("LOOPSTOCK_BENCH_OUT")
	if out == "" {
		t.Skip("make bench runs this (it writes docs/benchmarks.md)")
	}
	started := time.Now()
	writer, reader := nsqAnchors(t)
	capa := capacity(t, 10_500_000)
	e2e := endToEnd(t)
	def := defaultRate(t)
	doc := render(writer, reader, capa, e2e, def, heldMemory(t), time.Since(started))
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("wrote %s\n", out)
}

// heldMemory is what BenchmarkHeldMemoryAtFullInFlight reported in the
// same make bench (the Go benchmarks run first, into .data/go-bench.txt).
func heldMemory(t *testing.T) map[string]float64 {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(root, ".data", "go-bench.txt"))
	out := map[string]float64{}
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "BenchmarkHeldMemoryAtFullInFlight") {
			continue
		}
		f := strings.Fields(l)
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				out[f[i+1]] = v
			}
		}
	}
	return out
}

var opsRE = regexp.MustCompile(`([0-9.]+)ops/s`)

// nsqAnchors runs nsqd's own bench_writer (MPUB of 200 messages of 200
// bytes, on disk) and bench_reader against a fresh nsqd.
func nsqAnchors(t *testing.T) (writer, reader float64) {
	n := testenv.StartNSQ(t)
	run := func(name string, args ...string) float64 {
		out, err := exec.Command(testenv.Tool(t, name), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		m := opsRE.FindAllStringSubmatch(string(out), -1)
		if len(m) == 0 {
			t.Fatalf("%s printed no rate:\n%s", name, out)
		}
		v, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
		return v
	}
	writer = run("bench_writer", "--nsqd-tcp-address", n.NSQDTCP, "--topic", "bench", "--size", "200", "--batch-size", "200", "--runfor", "15s")
	reader = run("bench_reader", "--nsqd-tcp-address", n.NSQDTCP, "--topic", "bench", "--size", "200", "--runfor", "15s")
	fmt.Printf("bench_writer %.0f msgs/s, bench_reader %.0f msgs/s\n", writer, reader)
	return writer, reader
}

func servedWindows(t *testing.T, api string) map[int64]windowapi.Window {
	var ws []windowapi.Window
	testenv.GetJSON(api+"/v1/integers?limit=100", &ws)
	out := map[int64]windowapi.Window{}
	for _, w := range ws {
		out[w.Start.UnixMilli()] = w
	}
	return out
}

// liteAudit counts per window by message: at a million integers a second
// it keeps one entry per message, not per integer.
type liteAudit struct {
	mu   sync.Mutex
	seen map[[2]uint64]bool
	win  map[int64]testenv.Totals
}

func startLiteAudit(t *testing.T, nsqdTCP string) *liteAudit {
	a := &liteAudit{seen: map[[2]uint64]bool{}, win: map[int64]testenv.Totals{}}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 2500
	c, _ := nsq.NewConsumer(testenv.Topic, "audit", cfg)
	c.SetLogger(nil, nsq.LogLevelError)
	c.AddHandler(nsq.HandlerFunc(func(m *nsq.Message) error {
		var b wire.Batch
		if wire.Decode(m.Body, wire.Limits{Min: 0, Max: ^uint32(0)}, &b) != nil {
			return nil
		}
		key := [2]uint64{uint64(b.Instance[0])<<56 | uint64(b.Instance[1])<<48 | uint64(b.Instance[2])<<40 | uint64(b.Instance[3])<<32 |
			uint64(b.Instance[4])<<24 | uint64(b.Instance[5])<<16 | uint64(b.Instance[6])<<8 | uint64(b.Instance[7]), b.FirstSeq}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.seen[key] {
			return nil
		}
		a.seen[key] = true
		for _, it := range b.Items {
			s := window.Start(it.EventMs, 5000)
			w := a.win[s]
			w.Count++
			w.Sum += int64(it.Value)
			a.win[s] = w
		}
		return nil
	}))
	if err := c.ConnectToNSQD(nsqdTCP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return a
}

func (a *liteAudit) windows() map[int64]testenv.Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int64]testenv.Totals, len(a.win))
	for k, v := range a.win {
		out[k] = v
	}
	return out
}

// defaultPeriod is how long the default rate is measured: 180 windows of
// 500 ms, so that a p99 is not simply the worst.
const defaultPeriod = 90 * time.Second

type defaultResult struct {
	integersPerS float64
	cpuPerInt    map[string]time.Duration
	rssMB        map[string]float64
	api, static  loadResult
	freshP99     time.Duration
	freshP50     time.Duration
	freshN       int
	servedN      int     // windows the API first served while polled
	servedWithin int     // of which within 150 ms of their end
	written      int     // windows the averager stored in the period
	early        int     // of which by the watermark, before the grace
	amended      int     // stored windows amended in the period
	busy         float64 // cores busy on the machine over the period
	load         string  // /proc/loadavg at its end
}

// defaultRate runs the stack at its default rate (2 generators, 100 ms)
// with 500 ms windows (so freshness has many samples), measuring CPU per
// integer, memory, freshness, and then the API under load.
func defaultRate(t *testing.T) defaultResult {
	s := testenv.StartStack(t, testenv.StackOptions{Generators: 2, Averagers: 1, APIs: 1,
		AvgArgs: []string{"--window", "500ms", "--log-level", "info"}, GenArgs: []string{"--log-level", "info"}, APIArgs: []string{"--log-level", "info"}})
	s.WaitHealthy(t, 60*time.Second)
	api := "http://" + s.APIAddr
	avg := "http://" + s.Averagers[0].Flag("--http-addr")
	time.Sleep(5 * time.Second) // warm-up
	procs := map[string]*testenv.Proc{"integer-gen (each)": s.Generators[0], "integeraverage-cal": s.Averagers[0], "integer-api": s.APIs[0]}
	cpu0 := map[string]time.Duration{}
	for name, p := range procs {
		cpu0[name] = cpuTime(t, p)
	}
	c0 := testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total")
	w0, e0, a0 := testenv.Metric(t, avg, "integeraverage_cal_windows_written_total"), testenv.Metric(t, avg, "integeraverage_cal_windows_written_by_watermark_total"),
		testenv.Metric(t, avg, "integeraverage_cal_windows_amended_total")
	// Freshness, seen from outside: poll the API; when a window first
	// shows, how long after its end? Only windows that end after polling
	// began count: one already there says when polling began, not when
	// it was served.
	const lagBucket = `integer_api_window_serve_lag_seconds_bucket{le="0.15"}`
	// The windows stored during the warm-up stay out of the API's record
	// too: its first read reports nothing, as no read came before it.
	served0, within0 := testenv.Metric(t, api, "integer_api_window_serve_lag_seconds_count"), testenv.Metric(t, api, lagBucket)
	firstSeen := map[int64]time.Time{}
	busy0 := busyCores(t)
	pollFrom := time.Now()
	end := pollFrom.Add(defaultPeriod)
	for time.Now().Before(end) {
		var w windowapi.Window
		if code, _ := testenv.GetJSON(api+"/v1/integers/last", &w); code == 200 && w.End.After(pollFrom) {
			if _, ok := firstSeen[w.End.UnixMilli()]; !ok {
				firstSeen[w.End.UnixMilli()] = time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c1 := testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total")
	w1, e1, a1 := testenv.Metric(t, avg, "integeraverage_cal_windows_written_total"), testenv.Metric(t, avg, "integeraverage_cal_windows_written_by_watermark_total"),
		testenv.Metric(t, avg, "integeraverage_cal_windows_amended_total")
	// And seen from inside: the API's own record of when a read first found
	// each window (its histogram, over the same period).
	servedN := testenv.Metric(t, api, "integer_api_window_serve_lag_seconds_count") - served0
	servedWithin := testenv.Metric(t, api, lagBucket) - within0
	loadavg, _ := os.ReadFile("/proc/loadavg")
	busy := (busyCores(t) - busy0) / time.Since(pollFrom).Seconds()
	res := defaultResult{busy: busy, load: strings.Join(strings.Fields(string(loadavg))[:3], " "), servedN: int(servedN), servedWithin: int(servedWithin), integersPerS: (c1 - c0) / defaultPeriod.Seconds(), cpuPerInt: map[string]time.Duration{}, rssMB: map[string]float64{},
		written: int(w1 - w0), early: int(e1 - e0), amended: int(a1 - a0)}
	for name, p := range procs {
		per := float64(cpuTime(t, p)-cpu0[name]) / (c1 - c0)
		if strings.HasPrefix(name, "integer-gen") {
			per *= float64(len(s.Generators)) // each generator made half of them
		}
		res.cpuPerInt[name] = time.Duration(per)
		res.rssMB[name] = rss(t, p)
	}
	var lags []time.Duration
	for endMs, seen := range firstSeen {
		lags = append(lags, seen.Sub(time.UnixMilli(endMs)))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	if len(lags) > 0 {
		res.freshP99 = lags[min(len(lags)-1, len(lags)*99/100)]
		res.freshP50 = lags[len(lags)/2]
		res.freshN = len(lags)
	}
	fmt.Printf("freshness samples: %v\n", lags)
	// The API against a static handler serving the same bytes, same load,
	// each in a process of its own.
	body, _ := get(api + "/v1/integers")
	static := startStatic(t, body)
	res.static = load(static+"/v1/integers", 10*time.Second)
	res.api = load(api+"/v1/integers", 10*time.Second)
	fmt.Printf("default: %+v\n", res)
	return res
}

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
}

// load sends GETs from 16 workers with keep-alive for d.
func load(url string, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Now().Before(stop) {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					bad++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad++
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := loadResult{rps: float64(len(lat)) / d.Seconds(), errors: errs}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

func cpuTime(t *testing.T, p *testenv.Proc) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	// fields after the command name (which is in parentheses)
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz
}

func rss(t *testing.T, p *testenv.Proc) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(sc.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func met(ok bool) string {
	if ok {
		return "target met"
	}
	return "target missed"
}

func render(writer, reader float64, c capacityResult, e e2eResult, d defaultResult, held map[string]float64, took time.Duration) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	yes := func(ok bool, detail string) string {
		if ok {
			return "yes"
		}
		return "NO: " + detail
	}
	frames := func(top []string) {
		for _, f := range top {
			w("    %s", f)
		}
	}
	w("# Benchmarks")
	w("")
	w("Written by `make bench` (test/bench) on %s, in one run of %s. The machine is shared and", time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	w("noisy: read the ratios, measured side by side in the same run, rather than the absolute numbers.")
	w("")
	w("**Machine:** %s, %d cores; %s/%s, %s. nsqd v1.3.0 (messages on disk: `--mem-queue-size=0`),", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	w("Redis 7 with `appendfsync always`, Consul 1.14 (dev agent). Every process on 127.0.0.1.")
	w("")
	w("## Capacity")
	w("")
	w("The anchor is nsqd's own `bench_writer` (MPUB of 200 messages of 200 B, on disk) against a fresh")
	w("nsqd in the same run: **%.0f messages/s** (`bench_reader`: %.0f messages/s). Every ratio below is", writer, reader)
	w("integers/s over those messages/s. Each stage is driven until it saturates, not at a fixed load.")
	w("")
	w("| stage | integers/s | ÷ bench_writer | target | exact against the audit |")
	w("|---|---|---|---|---|")
	w("| generation → nsqd, peak | %.0f | **%s** | (reported) | |", c.peak.rate, ratio(c.peak.rate, writer))
	w("| nsqd → averager → integer-api → Redis, draining %.1f M integers | %.0f | **%s** | ≥ 10 (%s) | %s, %d windows |", c.backlog/1e6, c.drainRate,
		ratio(c.drainRate, writer), met(c.drainRate >= 10*writer), yes(c.exact, c.detail), c.drainWins)
	w("| end to end, highest load kept up with | %.0f | **%s** | ≥ 5 (%s) | %s, %d windows |", e.best.published, ratio(e.best.published, writer),
		met(e.best.published >= 5*writer), yes(e.exact, e.detail), e.windows)
	w("")
	top := func(frames []string, n int) string {
		if len(frames) == 0 {
			return "(no profile)"
		}
		var q []string
		for _, f := range frames[:min(n, len(frames))] {
			q = append(q, "`"+f+"`")
		}
		return strings.Join(q, ", ")
	}
	syscalls := func(frames []string) string {
		if len(frames) > 0 && strings.Contains(frames[0], "Syscall") {
			return " (system calls: each message written to the disk queue, read back, and sent)"
		}
		return ""
	}
	w("**What limits each stage now.** Generation → nsqd: the published rate grew with generators")
	w("until the machine's 2 cores were busy (%.2f at the peak: generators %.2f, nsqd %.2f, the rest", c.peak.cores, c.peak.genCores, c.peak.nsqdCores)
	w("other work on this shared machine). nsqd's top frames: %s%s. A generator's: %s.", top(c.nsqdTop, 1), syscalls(c.nsqdTop), top(c.genTop, 3))
	w("A generator queues a slot's integers as one chunk (it was one channel")
	w("operation per integer); drawn/s below %d × generators are slots its 1 ms timer missed on", c.perSlot*1000)
	w("the busy machine. The drain: nsqd reading its disk queue to one consumer and the averager's")
	w("per-integer work (decoding, the window's start, the collision check on what passes by); the")
	w("rest is per message (FIN, touch) or per window (one write). End to end: the averager used %.2f", e.best.avgCores)
	w("cores at the highest load kept up with; generation and nsqd used %.2f and %.2f, so the", e.best.genCores, e.best.nsqdCores)
	w("end-to-end rate is bound by the CPU generation and nsqd get on the shared cores, not by the")
	w("averager (the drain shows it alone stores %s× faster).", ratio(c.drainRate, e.best.published))
	w("")
	w("### Generation → nsqd")
	w("")
	w("Generators in load mode (`--interval 1ms --per-slot %d`, batches of up to 4096 integers, no", c.perSlot)
	w("averager running), added one at a time until the published rate (integers nsqd acknowledged)")
	w("grew by less than 10 %%; each measured over 10 s after a 3 s warm-up.")
	w("")
	w("| generators | drawn/s | published/s | given up (queue full) | cores busy | generators | nsqd |")
	w("|---|---|---|---|---|---|---|")
	for _, st := range c.steps {
		w("| %d | %.0f | %.0f | %.1f %% | %.2f | %.2f | %.2f |", st.gens, st.offered, st.rate, 100*st.notPubShare, st.cores, st.genCores, st.nsqdCores)
	}
	w("")
	w("CPU profile of one generator at the peak (5 s, own time, top frames):")
	w("")
	frames(c.genTop)
	w("")
	w("and of nsqd over the same 5 s:")
	w("")
	frames(c.nsqdTop)
	w("")
	w("### Drain")
	w("")
	w("With the generators above stopped, both channels emptied, as many generators as at the peak")
	w("published with no averager running until the backlog held %.1f M integers (%.0f MiB of", c.backlog/1e6, c.backlogMB)
	w("items); they were stopped, the audit consumer read its own channel, then")
	w("one averager (`--max-in-flight %d`) started. Timed from its first message consumed to the", c.inFlight)
	w("last integer stored: **%s**, %.0f integers/s; every window then compared with the audit.", c.drainTook.Round(time.Millisecond), c.drainRate)
	w("")
	w("Meanwhile the averager used %.2f cores and nsqd %.2f (of the machine's 2, shared).", c.avgCores, c.nsqdCores)
	w("")
	w("### End to end")
	w("")
	w("Generators (`--interval 1ms --per-slot %d`) → nsqd → averager → integer-api → Redis, generators", e.perSlot)
	w("added one at a time; each step measured over 10 s after a 5 s warm-up. A step keeps up when")
	w("the averager's channel grew by at most 2 %% of the messages published meanwhile. After the")
	w("last step the generators stop, the audit reads its channel and every window is compared.")
	w("")
	w("| generators | published/s | stored/s | channel grew (messages) | of published | kept up | cores busy | averager | generators | nsqd | others |")
	w("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, st := range e.steps {
		w("| %d | %.0f | %.0f | %d | %d | %v | %.2f | %.2f | %.2f | %.2f | %.2f |", st.gens, st.published, st.counted, st.depthGrowth, st.messages, st.keptUp,
			st.cores, st.avgCores, st.genCores, st.nsqdCores, st.others)
	}
	w("")
	w("*Cores busy* is the whole machine's (/proc/stat), shared with other work; *others* is what")
	w("the processes named do not account for (integer-api, Redis, Consul, the bench itself, and")
	w("whatever else the machine runs).")
	w("")
	w("### The averager's memory at full in-flight load")
	w("")
	w("`BenchmarkHeldMemoryAtFullInFlight` (services/averager, same `make bench`): 2 500 messages of")
	w("4 096 integers held while the store is down. The aggregator's own state, beyond the bodies")
	w("that nsqd's client holds anyway: **%.0f B per held message**, %.2f MiB in all; target ≤ %.0f B", held["B/held-msg"], held["MiB-at-full-in-flight"], held["target-B/held-msg"])
	w("per message (%s). The whole process while draining above, bodies included (2 500 × 49 188 B", met(held["B/held-msg"] > 0 && held["B/held-msg"] <= held["target-B/held-msg"]))
	w("= 117 MiB in flight at most): peak RSS **%.0f MB**; target ≤ 117 MiB + 64 MiB = 190 MB (%s).", c.avgRSSMB, met(c.avgRSSMB > 0 && c.avgRSSMB <= 190))
	w("")
	w("## At the default rate")
	w("")
	w("2 generators at 100 ms (%.1f integers/s), one averager (500 ms windows, so that freshness has", d.integersPerS)
	w("many samples), one API; %s.", defaultPeriod)
	w("")
	w("| service | CPU per integer | RSS (target ≤ 20 MB) |")
	w("|---|---|---|")
	names := make([]string, 0, len(d.cpuPerInt))
	for n := range d.cpuPerInt {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w("| %s | %s | %.1f MB (%s) |", n, d.cpuPerInt[n].Round(time.Microsecond), d.rssMB[n], met(d.rssMB[n] <= 20))
	}
	w("")
	w("CPU per integer is the process's user+system time over the integers counted in the same")
	w("%s; at 20 integers/s it is dominated by fixed costs (health checks, Consul watches, timers).", defaultPeriod)
	w("")
	const target = 150 * time.Millisecond
	amendPct := 0.0
	if d.written > 0 {
		amendPct = 100 * float64(d.amended) / float64(d.written)
	}
	w("**Freshness:** p99 of (first time the API serves a window − the window's end) over %d windows,", d.freshN)
	w("polled every 10 ms from outside: **%s**, p50 %s; target ≤ %s (%s). Windows are written by", d.freshP99.Round(time.Millisecond), d.freshP50.Round(time.Millisecond), target, met(d.freshP99 <= target))
	w("watermark (docs/design.md): of %d windows stored, %d before their grace (500 ms) ended; **%d", d.written, d.early, d.amended)
	w("amended (%.1f %%)**, target ≤ 1 %% (%s). The API's own record", amendPct, met(amendPct <= 1))
	w("(`integer_api_window_serve_lag_seconds`, end → the first read that found the window), same %s:", defaultPeriod)
	w("%d of %d windows within %s. Only windows that end after polling began are counted: one", d.servedWithin, d.servedN, target)
	w("already stored when polling began would measure when the poll started, not when it was served.")
	w("A negative lag is a window served before its end: it is complete once every generator has")
	w("drawn its last slot (wire flag *slot end*).")
	w("Meanwhile the machine's cores were %.2f busy of 2 (load average %s at the end): on a", d.busy, d.load)
	w("machine this busy the tail is the processes waiting for a core, and a generator that waits")
	w("longer than the grace has its windows written without it, then amended.")
	w("")
	w("## API")
	w("")
	w("`GET /v1/integers` under 16 keep-alive workers for 10 s, against a static net/http handler")
	w("serving the same bytes in a process of its own, same load generator, same run.")
	w("")
	w("| server | requests/s | p50 | p99 | errors |")
	w("|---|---|---|---|---|")
	w("| integer-api | %.0f | %s | %s | %d |", d.api.rps, d.api.p50.Round(time.Microsecond), d.api.p99.Round(time.Microsecond), d.api.errors)
	w("| static handler | %.0f | %s | %s | %d |", d.static.rps, d.static.p50.Round(time.Microsecond), d.static.p99.Round(time.Microsecond), d.static.errors)
	w("| **ratio** (target: req/s ≥ 0.8, p99 ≤ 2×) | **%s** (%s) | | **%s** (%s) | |", ratio(d.api.rps, d.static.rps), met(d.api.rps >= 0.8*d.static.rps),
		ratio(float64(d.api.p99), float64(d.static.p99)), met(d.api.p99 <= 2*d.static.p99))
	w("")
	w("integer-api answers reads from a 100 ms cache of the newest windows with their JSON encoded")
	w("once, so a read costs no Redis round trip (`services/integerapi/cache.go`).")
	w("")
	w("## Go benchmarks")
	w("")
	w("`go test -bench . ./internal/... ./services/...` (in `.data/go-bench.txt` after `make bench`): wire")
	w("decoding, the permutation, the coordination's cost per value against a real Consul")
	w("(`BenchmarkCostPerValue`: round trips per value at a 1 ms slot), the averager's held memory.")
	return b.String()
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown"
}
