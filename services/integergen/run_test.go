package integergen

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

// A cold start with another channel on the topic (an nsqadmin tail, an
// audit) and no averager yet: the averager's channel must still get every
// integer published, so it must exist before the first publish.
func TestTheAveragersChannelGetsEverythingWhenAnotherChannelCameFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and nsqd")
	}
	c := testenv.StartConsul(t)
	n := testenv.StartNSQ(t)
	n.RegisterIn(t, c)
	everyIntegerReachesTheAveragersChannel(t, c, n)
}

// With TLS (as on the cluster) integer-gen creates the channel through
// nsqd-gate with its certificate, and publishes with its certificate and
// secret: the same holds.
func TestTheAveragersChannelGetsEverythingOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and nsqd")
	}
	c := testenv.StartConsul(t)
	n := testenv.StartSecureNSQ(t)
	n.RegisterIn(t, c)
	f := testenv.CertFiles(t, n.CA, Name)
	everyIntegerReachesTheAveragersChannel(t, c, n.NSQ, "--tls-cert-file", f.Cert, "--tls-roots-file", f.Roots,
		"--nsq-auth-secret", n.Secrets[Name])
}

func everyIntegerReachesTheAveragersChannel(t *testing.T, c *testenv.Consul, n *testenv.NSQ, args ...string) {
	t.Helper()
	n.CreateChannel(t, "integers", "tail")
	o, err := ParseArgs(append([]string{"--consul-addr", c.HTTPAddr, "--http-addr", testenv.Addr(testenv.FreePort(t)), "--interval", "10ms"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	rand.Read(o.Instance[:])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, logging.Discard()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	depth := func(channel string) (topicCount, channelDepth int64, found bool) {
		var stats struct {
			Topics []struct {
				Name     string `json:"topic_name"`
				Count    int64  `json:"message_count"`
				Channels []struct {
					Name  string `json:"channel_name"`
					Depth int64  `json:"depth"`
				} `json:"channels"`
			} `json:"topics"`
		}
		if _, err := testenv.GetJSON("http://"+n.NSQDHTTP+"/stats?format=json&topic=integers", &stats); err != nil {
			return 0, 0, false
		}
		for _, tp := range stats.Topics {
			for _, ch := range tp.Channels {
				if ch.Name == channel {
					return tp.Count, ch.Depth, true
				}
			}
			return tp.Count, 0, false
		}
		return 0, 0, false
	}
	testenv.Eventually(t, 30*time.Second, "50 messages on the topic", func() bool { c, _, _ := depth("tail"); return c >= 50 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
	published, queued, found := depth("averager")
	if !found {
		t.Fatalf("%d messages published and no averager channel on the topic: they never reach the averager", published)
	}
	if queued != published {
		t.Fatalf("the averager's channel holds %d of the %d messages published", queued, published)
	}
}

func TestNodeNameIsTheAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	if got := discovery.NodeName(c.Client)(); got != "testnode" {
		t.Fatalf("node name %q, want the agent's, testnode", got)
	}
}
