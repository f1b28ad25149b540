// Package faults checks exactly-once under faults: the real stack, its
// processes SIGKILLed at seeded random moments and restarted, duplicate
// publishes injected, a backlog built and drained, and then every window
// the API serves compared with an independent audit consumer.
package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nsqio/go-nsq"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/windowcheck"
	"github.com/loopstock/loopstock/internal/wire"
)

const windowSize = 3 * time.Second

func envInt(name string, def int64) int64 {
	if s := os.Getenv(name); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return v
		}
	}
	return def
}

type faultRun struct {
	t     *testing.T
	s     *testenv.Stack
	rng   *rand.Rand
	start time.Time
	kills map[string]int
	// longest time without an active averager after killing the active one
	worstTakeover time.Duration
}

func (f *faultRun) logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(f.start).Seconds(), fmt.Sprintf(format, args...))
}

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack for minutes")
	}
	seed := envInt("LOOPSTOCK_FAULT_SEED", time.Now().UnixNano()%1_000_000_000)
	fmt.Printf("seed=%d (replay with LOOPSTOCK_FAULT_SEED=%d make test-faults)\n", seed, seed)
	backlog := time.Duration(envInt("LOOPSTOCK_FAULT_BACKLOG_SECONDS", 60)) * time.Second

	s := testenv.StartStack(t, testenv.StackOptions{
		Generators: 2, Averagers: 2, APIs: 1, Channels: []string{"audit"}, PersistentConsul: true, ReplicatedRedis: true,
		AvgArgs: []string{"--window", windowSize.String()},
	})
	tee := make(chan []byte, 64)
	audit := testenv.StartAuditWithTee(t, s.NSQ.NSQDTCP, testenv.Topic, "audit", tee)
	f := &faultRun{t: t, s: s, rng: rand.New(rand.NewPCG(uint64(seed), 0)), start: time.Now(), kills: map[string]int{}}
	stopDup := f.duplicate(tee, rand.New(rand.NewPCG(uint64(seed), 1)))
	s.WaitHealthy(t, 60*time.Second)
	f.waitLeader(30 * time.Second)
	f.logf("stack healthy")

	// Three SIGKILLs of every kind of process, in a seeded random order.
	// The store is replicated as on the cluster: its primary, its replica
	// and a Sentinel are each a kind.
	kinds := []string{"integer-gen", "nsqd", "nsqlookupd", "integeraverage-cal", "integer-api", "redis-primary", "redis-replica", "redis-sentinel", "consul"}
	var plan []string
	for i := 0; i < 3; i++ {
		plan = append(plan, kinds...)
	}
	f.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	backlogAt, hungStoreAt := f.rng.IntN(len(plan)), f.rng.IntN(len(plan))
	for i, kind := range plan {
		time.Sleep(time.Duration(2000+f.rng.IntN(4000)) * time.Millisecond)
		if i == backlogAt {
			f.backlog(backlog)
		}
		if i == hungStoreAt {
			f.hungStore()
		}
		f.kill(kind)
	}
	f.gracefulHandover()

	// Stop the generators (no new integers), then let everything settle.
	for _, g := range s.Generators {
		g.Stop(10 * time.Second)
	}
	stopDup()
	f.logf("generators stopped; waiting for the last windows")
	var served []windowapi.Window
	var sum windowcheck.Comparison
	deadline := time.Now().Add(90 * time.Second)
	for {
		served = f.served()
		sum = windowcheck.Compare(audit.Windows(windowSize), served)
		if sum.Lost == 0 && sum.Doubled == 0 && sum.Windows > 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // the averager flushes on its own clock; poll the result
	}
	for _, line := range sum.Details {
		t.Log(line)
	}
	killCount := 0
	for _, n := range f.kills {
		killCount += n
	}
	if f.worstTakeover > 15*time.Second {
		t.Errorf("an averager took over %s after the active one was killed: want ≤ 15s", f.worstTakeover)
	}
	if killCount < 20 {
		t.Errorf("%d kills, want at least 20", killCount)
	}
	if sum.Windows < 50 {
		t.Errorf("%d windows checked, want at least 50", sum.Windows)
	}
	if sum.Lost != 0 || sum.Doubled != 0 {
		t.Errorf("lost=%d doubled=%d (replay with LOOPSTOCK_FAULT_SEED=%d)", sum.Lost, sum.Doubled, seed)
	}
	fmt.Printf("kills by kind: %v; slowest takeover after killing the active averager: %s\n", f.kills, f.worstTakeover.Round(10*time.Millisecond))
	fmt.Printf("kills=%d windows=%d accepted=%d counted=%d lost=%d doubled=%d\n", killCount, sum.Windows, sum.Accepted, sum.Counted, sum.Lost, sum.Doubled)
}

func (f *faultRun) procs(kind string) []*testenv.Proc {
	switch kind {
	case "integer-gen":
		return f.s.Generators
	case "nsqd":
		return []*testenv.Proc{f.s.NSQ.NSQD}
	case "nsqlookupd":
		return []*testenv.Proc{f.s.NSQ.Lookupd}
	case "integeraverage-cal":
		return f.s.Averagers
	case "integer-api":
		return f.s.APIs
	case "redis-primary", "redis-replica":
		rr := f.s.Replicated
		rr.WaitReplicated(f.t, 60*time.Second)
		if kind == "redis-primary" {
			return []*testenv.Proc{rr.Primary().Proc}
		}
		return []*testenv.Proc{rr.Replica().Proc}
	case "redis-sentinel":
		var out []*testenv.Proc
		for _, s := range f.s.Replicated.Sentinels {
			out = append(out, s.Proc)
		}
		return out
	case "consul":
		return []*testenv.Proc{f.s.Consul.Proc}
	}
	f.t.Fatalf("unknown kind %s", kind)
	return nil
}

func (f *faultRun) kill(kind string) {
	if kind == "nsqd" {
		f.waitNoOrphans()
	}
	procs := f.procs(kind)
	p := procs[f.rng.IntN(len(procs))]
	wasLeader := false
	if kind == "integeraverage-cal" {
		if l := f.leader(); l != nil && f.rng.IntN(3) > 0 { // mostly the active one
			p, wasLeader = l, true
		}
	}
	down := time.Duration(500+f.rng.IntN(2500)) * time.Millisecond
	f.logf("SIGKILL %s (down %s)", p.Name, down)
	killed := time.Now()
	p.Kill()
	f.kills[kind]++
	if wasLeader {
		// Keep it down until another takes over, or 20s.
		f.waitLeaderSince(killed, 20*time.Second, p)
	}
	time.Sleep(down)
	p.Start()
	f.waitUp(kind)
}

func (f *faultRun) waitUp(kind string) {
	switch kind {
	case "consul":
		f.s.Consul.WaitReady(f.t)
	case "redis-primary", "redis-replica", "redis-sentinel":
		// Back in sync, after a failover when the primary was down long
		// enough (testenv.SentinelDownAfter): the next fault is one at a time.
		f.s.Replicated.WaitReplicated(f.t, 60*time.Second)
	case "nsqd":
		testenv.WaitHTTP(f.t, "http://"+f.s.NSQ.NSQDHTTP+"/ping")
	case "nsqlookupd":
		testenv.WaitHTTP(f.t, "http://"+f.s.NSQ.LookupdHTTP+"/ping")
	}
}

// waitNoOrphans waits until no message is in flight to a consumer that is
// gone. nsqd keeps such messages in memory until their timeout
// (--msg-timeout) and would lose them if it died too: that is a second
// failure, beyond the one-at-a-time faults this suite injects.
func (f *faultRun) waitNoOrphans() {
	var stats struct {
		Topics []struct {
			Channels []struct {
				Name     string `json:"channel_name"`
				InFlight int    `json:"in_flight_count"`
				Clients  []struct {
					InFlight int `json:"in_flight_count"`
				} `json:"clients"`
			} `json:"channels"`
		} `json:"topics"`
	}
	orphans := -1
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if okJSON("http://"+f.s.NSQ.NSQDHTTP+"/stats?format=json&topic="+testenv.Topic, &stats) {
			orphans = 0
			for _, tp := range stats.Topics {
				for _, ch := range tp.Channels {
					held := 0
					for _, c := range ch.Clients {
						held += c.InFlight
					}
					orphans += max(0, ch.InFlight-held) // the two counts are not read at one instant
				}
			}
			if orphans == 0 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond) // nsqd's own timeout requeues them; poll its stats
	}
	f.logf("still %d orphaned in-flight messages before killing nsqd", orphans)
}

// backlog stops every averager for d, then starts them again.
func (f *faultRun) backlog(d time.Duration) {
	f.logf("backlog: SIGKILL every averager for %s", d)
	for _, a := range f.s.Averagers {
		a.Kill()
		f.kills["integeraverage-cal"]++
	}
	time.Sleep(d)
	for _, a := range f.s.Averagers {
		a.Start()
	}
	f.waitLeader(30 * time.Second)
	f.logf("backlog: averagers back")
}

// hungStore freezes the Redis primary (SIGSTOP) for longer than the averager's message
// timeout, so that several windows fall due while every write hangs, then
// SIGKILLs the active averager: whatever it held must come back from nsqd.
func (f *faultRun) hungStore() {
	const frozen = 20 * time.Second // --msg-timeout is 15s
	f.s.Replicated.WaitReplicated(f.t, 60*time.Second)
	primary := f.s.Replicated.Primary()
	f.logf("hung store: SIGSTOP the redis primary %s for %s", primary.Name, frozen)
	primary.Signal(syscall.SIGSTOP)
	time.Sleep(frozen)
	if l := f.leader(); l != nil {
		f.logf("hung store: SIGKILL the active averager %s", l.Name)
		killed := time.Now()
		l.Kill()
		f.kills["integeraverage-cal"]++
		f.waitLeaderSince(killed, 20*time.Second, l)
		l.Start()
	}
	primary.Signal(syscall.SIGCONT)
	f.s.Replicated.WaitReplicated(f.t, 60*time.Second)
	f.logf("hung store: redis resumed; primary now %s", f.s.Replicated.Primary().Name)
}

// gracefulHandover stops the active averager with SIGTERM: another must be
// active within 2s.
func (f *faultRun) gracefulHandover() {
	f.s.WaitHealthy(f.t, 60*time.Second) // a standby that is itself recovering is not the case measured
	time.Sleep(2 * time.Second)          // and campaigning again (a blocking query on the lock) once healthy
	l := f.leader()
	if l == nil {
		f.waitLeader(30 * time.Second)
		l = f.leader()
	}
	stopped := time.Now()
	l.Signal(15) // SIGTERM, without waiting for it to exit
	f.waitLeaderSince(stopped, 10*time.Second, l)
	if d := time.Since(stopped); d > 2*time.Second {
		f.t.Errorf("graceful handover took %s, want ≤ 2s", d)
	}
	f.logf("graceful handover in %s", time.Since(stopped).Round(10*time.Millisecond))
	l.Stop(10 * time.Second)
	l.Start()
}

// leader is the averager whose /health says it is active (not one of except).
func (f *faultRun) leader(except ...*testenv.Proc) *testenv.Proc {
	for _, a := range f.s.Averagers {
		if !a.Running() || slices.Contains(except, a) {
			continue
		}
		var h struct {
			Leader bool `json:"leader"`
		}
		if okJSON("http://"+a.Flag("--http-addr")+"/health", &h) && h.Leader {
			return a
		}
	}
	return nil
}

func (f *faultRun) waitLeader(timeout time.Duration) {
	testenv.Eventually(f.t, timeout, "an active averager", func() bool { return f.leader() != nil })
}

func (f *faultRun) waitLeaderSince(since time.Time, timeout time.Duration, old *testenv.Proc) {
	deadline := since.Add(timeout)
	for f.leader(old) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(since); d > f.worstTakeover {
		f.worstTakeover = d
	}
}

// duplicate re-publishes about one message in ten that the audit sees, as
// a generator retrying after a lost acknowledgement would.
func (f *faultRun) duplicate(tee chan []byte, rng *rand.Rand) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		cfg := nsq.NewConfig()
		cfg.DialTimeout = time.Second
		p, _ := nsq.NewProducer(f.s.NSQ.NSQDTCP, cfg)
		p.SetLogger(nil, nsq.LogLevelError)
		defer p.Stop()
		for {
			select {
			case <-done:
				return
			case body := <-tee:
				if rng.IntN(10) == 0 && len(body) > 1 {
					body[1] |= wire.FlagDuplicate
					p.Publish(testenv.Topic, body) // nsqd may be down: a duplicate less
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// served reads every window the API serves, page by page, newest first.
func (f *faultRun) served() []windowapi.Window {
	for _, api := range f.s.APIs {
		if ws, ok := windowcheck.AllWindows("http://" + api.Flag("--http-addr")); ok {
			return ws
		}
	}
	return nil
}

// okJSON is true when url answered 200 with JSON decoded into v.
func okJSON(url string, v any) bool {
	code, err := testenv.GetJSON(url, v)
	return err == nil && code == 200
}
