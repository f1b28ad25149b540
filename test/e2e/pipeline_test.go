// Package e2e runs the whole system — real Consul, nsqlookupd, nsqd,
// redis-server and the three services as processes — and checks it from
// the outside, against an independent NSQ consumer.
package e2e

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

func TestPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	s := testenv.StartStack(t, testenv.StackOptions{Generators: 2, Averagers: 1, APIs: 1, Channels: []string{"audit"}})
	audit := testenv.StartAudit(t, s.NSQ.NSQDTCP, testenv.Topic, "audit")
	s.WaitHealthy(t, 30*time.Second)
	for _, infra := range []string{"nsqd", "nsqlookupd", "redis"} {
		s.Consul.WaitPassing(t, infra, 1, 10*time.Second)
	}
	api := "http://" + s.APIAddr

	t.Run("averages equal the audit's exact means", func(t *testing.T) {
		var served []windowapi.Window
		testenv.Eventually(t, 40*time.Second, "two closed windows served", func() bool {
			code, err := testenv.GetJSON(api+"/v1/integers?limit=100", &served)
			return err == nil && code == 200 && len(served) >= 2
		})
		var last map[string]any
		testenv.Eventually(t, 15*time.Second, "every served window to match the audit", func() bool {
			testenv.GetJSON(api+"/v1/integers?limit=100", &served)
			seen := audit.Windows(5 * time.Second)
			for _, w := range served {
				a := seen[w.Start.UnixMilli()]
				if a.Count != w.Count || a.Sum != w.Sum {
					return false
				}
			}
			return true
		})
		for _, w := range served {
			if w.Count < 1 || w.Count > 100 {
				t.Errorf("window %v: count %d, want 1..100 (2 generators × 50 slots)", w.Start, w.Count)
			}
			if want := float64(w.Sum) / float64(w.Count); w.Average != want {
				t.Errorf("window %v: average %v, want %v", w.Start, w.Average, want)
			}
			if w.Average < 1 || w.Average > 10000 {
				t.Errorf("window %v: average %v outside 1..10000", w.Start, w.Average)
			}
			if !w.End.Equal(w.Start.Add(5*time.Second)) || w.Start.UnixMilli()%5000 != 0 {
				t.Errorf("window %v–%v is not an epoch-aligned 5s window", w.Start, w.End)
			}
		}
		if code, err := testenv.GetJSON(api+"/v1/integers/last", &last); err != nil || code != 200 || last["start"] != served[0].Start.Format(windowapi.TimeFormat) {
			t.Errorf("/v1/integers/last = %d %v, want the newest window %v", code, last, served[0].Start)
		}
	})

	t.Run("the page plots the windows the API serves", func(t *testing.T) { checkPage(t, api) })

	t.Run("the API records how fresh each window was when first served", func(t *testing.T) {
		// How fresh is a benchmark's question (make bench: p99 serve lag);
		// on a shared machine a test only checks that it is recorded.
		base := "http://" + s.APIs[0].Flag("--http-addr")
		if count := testenv.Metric(t, base, "integer_api_window_serve_lag_seconds_count"); count < 1 {
			t.Errorf("serve lag: %v windows recorded; want ≥ 1", count)
		}
	})

	t.Run("no two generators emit the same value in a slot", func(t *testing.T) {
		bySlot := map[int64]map[uint32]int{}
		for _, r := range audit.Records() {
			if bySlot[r.EventMs] == nil {
				bySlot[r.EventMs] = map[uint32]int{}
			}
			bySlot[r.EventMs][r.Value]++
		}
		both := 0
		for slot, values := range bySlot {
			n := 0
			for v, c := range values {
				n += c
				if c > 1 {
					t.Errorf("slot %d: value %d emitted %d times", slot, v, c)
				}
			}
			if n == 2 {
				both++
			}
		}
		if both < 50 {
			t.Errorf("only %d slots with both generators: the check saw too little", both)
		}
	})

	t.Run("junk is dead-lettered and the averager keeps running", func(t *testing.T) {
		resp, err := http.Post("http://"+s.NSQ.NSQDHTTP+"/pub?topic="+testenv.Topic, "application/octet-stream", strings.NewReader("this is not an integer"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("publishing junk: %v %v", err, resp)
		}
		resp.Body.Close()
		testenv.Eventually(t, 10*time.Second, "the junk on the dead-letter topic", func() bool {
			return channelDepth(t, s.NSQ.NSQDHTTP, testenv.Topic+"-dead-letter", "inspect") >= 1
		})
		avgMetrics := metrics(t, s.Averagers[0])
		if !strings.Contains(avgMetrics, `integeraverage_cal_messages_rejected_total{reason="unknown_version"} 1`) ||
			!strings.Contains(avgMetrics, `integeraverage_cal_messages_dead_lettered_total{reason="unknown_version"} 1`) {
			t.Errorf("rejection not counted:\n%s", grep(avgMetrics, "rejected|dead_lettered"))
		}
		if !s.Averagers[0].Running() {
			t.Fatal("the averager died on junk")
		}
	})

	t.Run("a hung redis gives 503 and a critical check, then recovers", func(t *testing.T) {
		s.Redis.Signal(syscall.SIGSTOP)
		var e windowapi.Error
		testenv.Eventually(t, 10*time.Second, "503 from the API", func() bool {
			code, _ := testenv.GetJSON(api+"/v1/integers/last", &e)
			return code == 503
		})
		if e.Code != windowapi.CodeUnavailable {
			t.Errorf("503 body %+v", e)
		}
		testenv.Eventually(t, 15*time.Second, "integer-api's consul check to turn critical", func() bool {
			checks, _, err := s.Consul.Client.Health().Checks("integer-api", nil)
			return err == nil && len(checks) == 1 && checks[0].Status == "critical"
		})
		s.Redis.Signal(syscall.SIGCONT)
		testenv.Eventually(t, 15*time.Second, "the API to answer 200 again", func() bool {
			code, _ := testenv.GetJSON(api+"/v1/integers/last", nil)
			return code == 200
		})
		s.Consul.WaitPassing(t, "integer-api", 1, 15*time.Second)
	})
}

func metrics(t *testing.T, p *testenv.Proc) string {
	t.Helper()
	addr := p.Flag("--http-addr")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, words string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range strings.Split(words, "|") {
			if strings.Contains(l, w) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func channelDepth(t *testing.T, nsqdHTTP, topic, channel string) int64 {
	var stats struct {
		Topics []struct {
			Name     string `json:"topic_name"`
			Channels []struct {
				Name  string `json:"channel_name"`
				Depth int64  `json:"depth"`
			} `json:"channels"`
		} `json:"topics"`
	}
	if _, err := testenv.GetJSON("http://"+nsqdHTTP+"/stats?format=json&topic="+topic, &stats); err != nil {
		return -1
	}
	for _, tp := range stats.Topics {
		for _, c := range tp.Channels {
			if tp.Name == topic && c.Name == channel {
				return c.Depth
			}
		}
	}
	return 0
}
