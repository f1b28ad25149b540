package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary builds loopstock's binary (once per test process, from the
// current source) and returns its path.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "loopstock-bin-")
		if buildErr != nil {
			return
		}
		// As the Makefile builds them, so benchmarks measure what ships.
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", buildDir+"/",
			"./cmd/integer-gen", "./cmd/integeraverage-cal", "./cmd/integer-api")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the services: %v", buildErr)
	}
	return filepath.Join(buildDir, name)
}

// WriteToken is the token the stacks of the tests share.
const WriteToken = "test-write-token"

// Stack is the whole system on loopback: Consul, NSQ, Redis and the three
// services, each a real process.
type Stack struct {
	Consul     *Consul
	NSQ        *NSQ
	Redis      *Redis // nil with a replicated store
	Replicated *ReplicatedRedis
	Generators []*Proc
	Averagers  []*Proc
	APIs       []*Proc
	// APIAddr is the first API's HTTP address.
	APIAddr string
	t       testing.TB
}

// StackOptions size the stack; the Args are added to each service's flags.
type StackOptions struct {
	Generators, Averagers, APIs int
	GenArgs, AvgArgs, APIArgs   []string
	// Channels are created on the topic before anything is published, so
	// an audit consumer sees every message.
	Channels []string
	// PersistentConsul runs a Consul server with its state on disk, for
	// tests that kill and restart it.
	PersistentConsul bool
	// ReplicatedRedis runs the store as on the cluster: a primary, a
	// replica and three Sentinels, which integer-api finds through Consul.
	ReplicatedRedis bool
}

// Topic is the topic the stacks use.
const Topic = "integers"

// StartStack starts everything and registers the infrastructure in Consul;
// it returns once the services are started (not necessarily passing).
func StartStack(t testing.TB, o StackOptions) *Stack {
	t.Helper()
	s := &Stack{t: t}
	if o.PersistentConsul {
		s.Consul = StartConsulServer(t)
	} else {
		s.Consul = StartConsul(t)
	}
	s.NSQ = StartNSQ(t)
	s.NSQ.RegisterIn(t, s.Consul)
	apiArgs := append([]string{"--write-token", WriteToken}, o.APIArgs...)
	if o.ReplicatedRedis {
		s.Replicated = StartReplicatedRedis(t)
		s.Replicated.RegisterIn(t, s.Consul)
		apiArgs = append(apiArgs, "--redis-sentinel-service", SentinelService, "--redis-master", MasterName)
	} else {
		s.Redis = StartRedis(t)
		s.Redis.RegisterIn(t, s.Consul)
	}
	// Not the averager's channel: integer-gen creates it with the topic, and
	// the stacks check that it does (another channel exists first).
	for _, ch := range o.Channels {
		s.NSQ.CreateChannel(t, Topic, ch)
	}
	s.NSQ.CreateChannel(t, Topic+"-dead-letter", "inspect")
	for i := 0; i < o.APIs; i++ {
		port := FreePort(t)
		if i == 0 {
			s.APIAddr = Addr(port)
		}
		s.APIs = append(s.APIs, s.service(t, "integer-api", i, port, apiArgs))
	}
	for i := 0; i < o.Averagers; i++ {
		s.Averagers = append(s.Averagers, s.service(t, "integeraverage-cal", i, FreePort(t),
			append([]string{"--write-token", WriteToken, "--lookupd-poll-interval", "1s"}, o.AvgArgs...)))
	}
	for i := 0; i < o.Generators; i++ {
		s.AddGenerator(t, o.GenArgs...)
	}
	return s
}

// AddGenerator starts one more integer-gen.
func (s *Stack) AddGenerator(t testing.TB, args ...string) *Proc {
	p := s.service(t, "integer-gen", len(s.Generators), FreePort(t), args)
	s.Generators = append(s.Generators, p)
	return p
}

func (s *Stack) service(t testing.TB, name string, i, port int, args []string) *Proc {
	all := append([]string{"--consul-addr", s.Consul.HTTPAddr, "--http-addr", Addr(port),
		"--service-id", fmt.Sprintf("%s-%d", name, port), "--log-level", "debug"}, args...)
	p := NewProc(t, fmt.Sprintf("%s#%d", name, i), Binary(t, name), all...)
	p.Start()
	return p
}

// CreateChannel creates topic and channel on nsqd.
func (n *NSQ) CreateChannel(t testing.TB, topic, channel string) {
	t.Helper()
	for _, u := range []string{
		"http://" + n.NSQDHTTP + "/topic/create?topic=" + topic,
		"http://" + n.NSQDHTTP + "/channel/create?topic=" + topic + "&channel=" + channel,
	} {
		resp, err := http.Post(u, "", nil)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", u, resp.Status)
		}
	}
}

// WaitHealthy waits until every service passes in Consul.
func (s *Stack) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	for name, n := range map[string]int{"integer-gen": len(s.Generators), "integeraverage-cal": len(s.Averagers), "integer-api": len(s.APIs)} {
		if n > 0 {
			s.Consul.WaitPassing(t, name, n, timeout)
		}
	}
}

// AddAverager starts one more integeraverage-cal.
func (s *Stack) AddAverager(t testing.TB, args ...string) *Proc {
	p := s.service(t, "integeraverage-cal", len(s.Averagers), FreePort(t),
		append([]string{"--write-token", WriteToken, "--lookupd-poll-interval", "1s"}, args...))
	s.Averagers = append(s.Averagers, p)
	return p
}

// ChannelStats are nsqd's counts for one channel.
type ChannelStats struct {
	Depth    int64 `json:"depth"`
	InFlight int64 `json:"in_flight_count"`
	Messages int64 `json:"message_count"`
	// Clients are the channel's subscribers.
	Clients []ClientStats `json:"clients"`
}

// ClientStats is what nsqd reports of one subscriber's connection.
type ClientStats struct {
	Remote string `json:"remote_address"`
	TLS    bool   `json:"tls"`
	Authed bool   `json:"authed"`
}

// TopicDepth is how many messages topic holds that it has not yet copied
// to its channels.
func (n *NSQ) TopicDepth(t testing.TB, topic string) int64 {
	t.Helper()
	var stats nsqStats
	if code, err := GetJSON("http://"+n.NSQDHTTP+"/stats?format=json&topic="+topic, &stats); err != nil || code != 200 {
		t.Fatalf("nsqd stats: %d %v", code, err)
	}
	for _, tp := range stats.Topics {
		if tp.Name == topic {
			return tp.Depth
		}
	}
	return 0
}

type nsqStats struct {
	Topics []struct {
		Name     string `json:"topic_name"`
		Depth    int64  `json:"depth"`
		Channels []struct {
			Name string `json:"channel_name"`
			ChannelStats
		} `json:"channels"`
	} `json:"topics"`
}

// Channel returns nsqd's counts for topic's channel (zero when it has none).
func (n *NSQ) Channel(t testing.TB, topic, channel string) ChannelStats {
	t.Helper()
	var stats struct {
		Topics []struct {
			Name     string `json:"topic_name"`
			Channels []struct {
				Name string `json:"channel_name"`
				ChannelStats
			} `json:"channels"`
		} `json:"topics"`
	}
	if code, err := GetJSON("http://"+n.NSQDHTTP+"/stats?format=json&topic="+topic+"&channel="+channel, &stats); err != nil || code != 200 {
		t.Fatalf("nsqd stats: %d %v", code, err)
	}
	for _, tp := range stats.Topics {
		for _, ch := range tp.Channels {
			if tp.Name == topic && ch.Name == channel {
				return ch.ChannelStats
			}
		}
	}
	return ChannelStats{}
}
