package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/windowcheck"
)

// clientLossWithin is what docs/operations.md ("A client is lost") states:
// every service job passing again within 90 s of a client's loss.
const clientLossWithin = 90 * time.Second

// apiReader asks integer-api for the newest window again and again, looking
// up a passing instance in Consul before every request, as a client that
// resolves integer-api.service.consul does.
type apiReader struct {
	c              *cl
	total, failed  atomic.Int64
	mu             sync.Mutex
	failures       []string
	once           sync.Once
	stop, finished chan struct{}
}

func (c *cl) startReader() *apiReader {
	r := &apiReader{c: c, stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r.total.Add(1)
			if err := r.readOnce(); err != nil {
				r.failed.Add(1)
				r.mu.Lock()
				if len(r.failures) < 5 {
					r.failures = append(r.failures, err.Error())
				}
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *apiReader) readOnce() error {
	_, err := r.c.lastWindow()
	return err
}

// done stops the reader (once; later calls only read) and says how it went.
func (r *apiReader) done() (total, failed int64, failures []string) {
	r.once.Do(func() { close(r.stop) })
	<-r.finished
	return r.total.Load(), r.failed.Load(), r.failures
}

// healthy lists the passing instances of a service.
func (c *cl) healthy(service string) ([]*consulapi.ServiceEntry, error) {
	entries, _, err := c.consulClient.Health().Service(service, "", true, nil)
	return entries, err
}

// passing lists address:port of the passing instances of a service.
func (c *cl) passing(service string) ([]string, error) {
	entries, err := c.healthy(service)
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port))
	}
	return out, err
}

// passingOn counts a service's passing instances by Consul node.
func (c *cl) passingOn(service string) (map[string]int, error) {
	entries, err := c.healthy(service)
	out := map[string]int{}
	for _, e := range entries {
		out[e.Node.Node]++
	}
	return out, err
}

// rollout registers a new version of integer-api (a changed meta, as an
// edited job file run again) and waits for its deployment to succeed,
// while a reader keeps asking: it returns the failed requests.
func (c *cl) rollout() (failed int64, err error) {
	// The job goes back raw, as the agent gave it: a nomad/api Job, newer
	// than the agent, could drop or add fields and change more than meta.
	var job map[string]any
	if err := c.nomad.JSON("/v1/job/integer-api", &job); err != nil {
		return 0, err
	}
	version, _ := job["Version"].(float64)
	meta, _ := job["Meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["rollout"] = strconv.FormatInt(time.Now().UnixNano(), 10)
	job["Meta"] = meta
	body, _ := json.Marshal(map[string]any{"Job": job})

	reader := c.startReader()
	defer reader.done() // also when a wait below ends the test
	code, out, err := c.nomad.Do("POST", "/v1/jobs", string(body))
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("registering integer-api's new version: %v %d %s", err, code, out)
	}
	want := int(version) + 1
	c.waitFor(fmt.Sprintf("integer-api version %d rolled out (deployment successful)", want), 5*time.Minute, func() error {
		d, _, err := c.nomadClient.Jobs().LatestDeployment("integer-api", nil)
		switch {
		case err != nil:
			return err
		case d == nil:
			return fmt.Errorf("no deployment")
		case d.JobVersion < uint64(want):
			return fmt.Errorf("deployment of version %d", d.JobVersion)
		case d.Status == "failed":
			return fmt.Errorf("deployment failed: %s", d.StatusDescription)
		case d.Status != "successful":
			return fmt.Errorf("deployment %s: %s", d.Status, d.StatusDescription)
		}
		return nil
	})
	// The reader goes on until every old instance has exited: an instance
	// stopped last is still in its shutdown delay when the deployment is
	// marked successful.
	c.waitFor("every old integer-api instance exited", 2*time.Minute, func() error {
		allocs, _, err := c.nomadClient.Jobs().Allocations("integer-api", false, nil)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.DesiredStatus != "run" && (a.ClientStatus == "running" || a.ClientStatus == "pending") {
				return fmt.Errorf("allocation %s still %s", a.ID[:8], a.ClientStatus)
			}
		}
		return nil
	})
	total, failed, failures := reader.done()
	c.st.logf("rollout: %d requests through Consul, %d failed %v", total, failed, failures)
	if total < 50 {
		return failed, fmt.Errorf("only %d requests during the rollout", total)
	}
	if failed > 0 {
		return failed, fmt.Errorf("%d of %d requests failed during the rollout: %v", failed, total, failures)
	}
	return 0, nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// leaderNode is the Consul node of the session holding the averager's key.
func (c *cl) leaderNode() (string, error) {
	kv, _, err := c.consulClient.KV().Get("loopstock/integeraverage-cal/leader", nil)
	if err != nil {
		return "", err
	}
	if kv == nil || kv.Session == "" {
		return "", fmt.Errorf("no averager holds the leader key")
	}
	s, _, err := c.consulClient.Session().Info(kv.Session, nil)
	if err != nil {
		return "", err
	}
	if s == nil {
		return "", fmt.Errorf("the leader's session %s is gone", kv.Session)
	}
	return s.Node, nil
}

// stopAllocsOn stops a job's running allocations on a node (Nomad places
// replacements): the graceful stop an operator's nomad alloc stop does.
func (c *cl) stopAllocsOn(job, node string) error {
	allocs, _, err := c.nomadClient.Jobs().Allocations(job, false, nil)
	if err != nil {
		return err
	}
	for _, a := range allocs {
		if a.NodeName == node && a.DesiredStatus == "run" {
			if _, err := c.nomadClient.Allocations().Stop(&nomadapi.Allocation{ID: a.ID}, nil); err != nil {
				return fmt.Errorf("stopping %s: %v", a.ID, err)
			}
		}
	}
	return nil
}

// channelOnEveryNSQD: every passing nsqd has the channel on the topic.
func (c *cl) channelOnEveryNSQD(channel string) error {
	entries, err := c.healthy("nsqd")
	if err != nil {
		return err
	}
	if len(entries) != len(c.clients) {
		return fmt.Errorf("%d nsqd passing", len(entries))
	}
	for _, e := range entries {
		var stats struct {
			Topics []struct {
				TopicName string `json:"topic_name"`
				Channels  []struct {
					ChannelName string `json:"channel_name"`
				} `json:"channels"`
			} `json:"topics"`
		}
		// nsqd's HTTP API through nsqd-gate, as the auditor (its grant reads stats).
		auth, err := c.auditClient()
		if err != nil {
			return err
		}
		resp, err := auth.HTTPClient(3 * time.Second).Get("https://" + e.Service.Address + ":" + e.Service.Meta["https_port"] + "/stats?format=json&topic=integers")
		if err != nil {
			return err
		}
		err = json.NewDecoder(resp.Body).Decode(&stats)
		resp.Body.Close()
		if err != nil {
			return err
		}
		found := false
		for _, tp := range stats.Topics {
			for _, ch := range tp.Channels {
				found = found || (tp.TopicName == "integers" && ch.ChannelName == channel)
			}
		}
		if !found {
			return fmt.Errorf("no channel %s on nsqd %s", channel, e.Service.Address)
		}
	}
	return nil
}

// servedWindows reads every window from a passing integer-api.
func (c *cl) servedWindows() ([]windowapi.Window, error) {
	addrs, err := c.passing("integer-api")
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ws, ok := windowcheck.AllWindows("http://" + a); ok {
			return ws, nil
		}
	}
	return nil, fmt.Errorf("no integer-api answered the history (%v)", addrs)
}

// auditedBetween keeps the audited windows that start in [from, to).
func auditedBetween(ws map[int64]testenv.Totals, from, to time.Time) map[int64]testenv.Totals {
	out := map[int64]testenv.Totals{}
	for start, w := range ws {
		if start >= from.UnixMilli() && start < to.UnixMilli() {
			out[start] = w
		}
	}
	return out
}

// servedBetween keeps the served windows that start in [from, to).
func servedBetween(ws []windowapi.Window, from, to time.Time) []windowapi.Window {
	var out []windowapi.Window
	for _, w := range ws {
		if !w.Start.Before(from) && w.Start.Before(to) {
			out = append(out, w)
		}
	}
	return out
}
