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
	var pipe pipelineResult
	if os.Getenv("LOOPSTOCK_BENCH_SKIP_PIPELINE") == "" {
		pipe = pipeline(t)
	}
	def := defaultRate(t)
	doc := render(writer, reader, pipe, def, time.Since(started))
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("wrote %s\n", out)
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

type pipelineResult struct {
	perSlot, generators int
	rate                float64 // integers/s counted
	windows             int
	exact               bool
	detail              string
}

// pipeline: generators in load mode → nsqd (messages on disk) → averager
// → integer-api → Redis, for 30 s; then every window checked exact against
// an audit consumer.
func pipeline(t *testing.T) pipelineResult {
	const gens, perSlot = 2, 250
	s := testenv.StartStack(t, testenv.StackOptions{
		APIs: 1, Averagers: 1, Channels: []string{"audit"},
		AvgArgs: []string{"--msg-timeout", "60s", "--log-level", "info"},
	})
	audit := startLiteAudit(t, s.NSQ.NSQDTCP)
	for i := 0; i < gens; i++ {
		s.AddGenerator(t, "--interval", "1ms", "--per-slot", strconv.Itoa(perSlot), "--max-generators", "4", "--batch-max", "4096",
			"--batch-wait", "20ms", "--lease-ahead", "500ms", "--queue-size", "1000000", "--log-level", "info")
	}
	s.WaitHealthy(t, 60*time.Second)
	avg := "http://" + s.Averagers[0].Flag("--http-addr")
	time.Sleep(10 * time.Second) // warm-up: a fixed period, not a synchronisation
	c0, t0 := testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total"), time.Now()
	time.Sleep(30 * time.Second)
	c1, t1 := testenv.Metric(t, avg, "integeraverage_cal_integers_counted_total"), time.Now()
	res := pipelineResult{perSlot: perSlot, generators: gens, rate: (c1 - c0) / t1.Sub(t0).Seconds()}
	for _, g := range s.Generators {
		g.Stop(10 * time.Second)
	}
	// Exactness: every window the audit saw is served with the same count and sum.
	deadline := time.Now().Add(90 * time.Second)
	for {
		served := servedWindows(t, "http://"+s.APIAddr)
		seen := audit.windows()
		bad := 0
		for start, a := range seen {
			if w, ok := served[start]; !ok || w.Count != a.Count || w.Sum != a.Sum {
				bad++
			}
		}
		res.windows = len(seen)
		if bad == 0 && len(seen) > 0 {
			res.exact = true
			break
		}
		if time.Now().After(deadline) {
			res.detail = fmt.Sprintf("%d of %d windows differ from the audit", bad, len(seen))
			break
		}
		time.Sleep(time.Second)
	}
	fmt.Printf("pipeline: %.0f integers/s, %d windows exact=%v %s\n", res.rate, res.windows, res.exact, res.detail)
	return res
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

type defaultResult struct {
	integersPerS float64
	cpuPerInt    map[string]time.Duration
	rssMB        map[string]float64
	api, static  loadResult
	freshP99     time.Duration
	freshP50     time.Duration
	freshN       int
	servedN      int // windows the API first served while polled
	servedWithin int // of which within 600 ms of their end
	grace        time.Duration
}

// defaultRate runs the stack at its default rate (2 generators, 100 ms)
// with 1 s windows (so freshness has many samples), measuring CPU per
// integer, memory, freshness, and then the API under load.
func defaultRate(t *testing.T) defaultResult {
	s := testenv.StartStack(t, testenv.StackOptions{Generators: 2, Averagers: 1, APIs: 1,
		AvgArgs: []string{"--window", "1s", "--log-level", "info"}, GenArgs: []string{"--log-level", "info"}, APIArgs: []string{"--log-level", "info"}})
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
	// Freshness, seen from outside: poll the API; when a window first
	// shows, how long after its end? Only windows that end after polling
	// began count: one already there says when polling began, not when
	// it was served.
	const lagBucket = `integer_api_window_serve_lag_seconds_bucket{le="0.6"}`
	// The windows stored during the warm-up stay out of the API's record
	// too: its first read reports nothing, as no read came before it.
	served0, within0 := testenv.Metric(t, api, "integer_api_window_serve_lag_seconds_count"), testenv.Metric(t, api, lagBucket)
	firstSeen := map[int64]time.Time{}
	pollFrom := time.Now()
	end := pollFrom.Add(60 * time.Second)
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
	// And seen from inside: the API's own record of when a read first found
	// each window (its histogram, over the same 60 s).
	servedN := testenv.Metric(t, api, "integer_api_window_serve_lag_seconds_count") - served0
	servedWithin := testenv.Metric(t, api, lagBucket) - within0
	res := defaultResult{servedN: int(servedN), servedWithin: int(servedWithin), integersPerS: (c1 - c0) / 60, cpuPerInt: map[string]time.Duration{}, rssMB: map[string]float64{}, grace: 500 * time.Millisecond}
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

func render(writer, reader float64, p pipelineResult, d defaultResult, took time.Duration) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	w("# Benchmarks")
	w("")
	w("Written by `make bench` (test/bench) on %s, in one run of %s. The machine is shared and", time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	w("noisy: read the ratios, measured side by side in the same run, rather than the absolute numbers.")
	w("")
	w("**Machine:** %s, %d cores; %s/%s, %s. nsqd v1.3.0 (messages on disk: `--mem-queue-size=0`),", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	w("Redis 7 with `appendfsync always`, Consul 1.14 (dev agent). Every process on 127.0.0.1.")
	w("")
	w("## Pipeline throughput")
	w("")
	w("%d generators in load mode (`--interval 1ms --per-slot %d`: integers batched up to 4096 per", p.generators, p.perSlot)
	w("message) → nsqd → integeraverage-cal → integer-api → Redis, measured over 30 s after a 10 s warm-up;")
	w("then every window compared with an independent consumer on its own channel.")
	w("")
	w("| measure | value |")
	w("|---|---|")
	w("| pipeline, integers/s counted | %.0f |", p.rate)
	w("| nsqd `bench_writer` (MPUB of 200 × 200 B, on disk), messages/s | %.0f |", writer)
	w("| nsqd `bench_reader`, messages/s | %.0f |", reader)
	w("| **ratio** pipeline ÷ bench_writer (target ≥ 1.0, stretch ≥ 3) | **%s** (%s) |", ratio(p.rate, writer), met(p.rate >= writer))
	exact := "yes"
	if !p.exact {
		exact = "NO: " + p.detail
	}
	w("| windows checked exact against the audit | %d (%s) |", p.windows, exact)
	w("")
	w("## At the default rate")
	w("")
	w("2 generators at 100 ms (%.1f integers/s), one averager (1 s windows, so that freshness has", d.integersPerS)
	w("many samples), one API; 60 s.")
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
	w("60 s; at 20 integers/s it is dominated by fixed costs (health checks, Consul watches, timers).")
	w("")
	target := d.grace + 100*time.Millisecond
	w("**Freshness:** p99 of (first time the API serves a window − the window's end) over %d windows,", d.freshN)
	w("polled every 10 ms from outside: **%s**, p50 %s; target ≤ allowed lateness + 100 ms = %s (the", d.freshP99.Round(time.Millisecond), d.freshP50.Round(time.Millisecond), target)
	w("grace before a window is written, plus the API's read cache): %s. The API's own record", met(d.freshP99 <= target))
	w("(`integer_api_window_serve_lag_seconds`, end → the first read that found the window), same 60 s:")
	w("%d of %d windows within %s. The median is the grace plus the averager's 25 ms flush tick and", d.servedWithin, d.servedN, target)
	w("the write. Only windows that end after polling began are counted: one already stored when")
	w("polling began would measure when the poll started, not when it was served.")
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
	w("`go test -bench . ./internal/...` (in `.data/go-bench.txt` after `make bench`): wire decoding,")
	w("the permutation, and the coordination's cost per value against a real Consul")
	w("(`BenchmarkCostPerValue`: round trips per value at a 1 ms slot).")
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
