// Package discovery follows the healthy instances of a Consul service with
// blocking queries (watch, don't poll), in package watch's loop: skip when
// the index did not move, start over when it went backwards, back off
// while the agent is unreachable.
//
// Each registration is checked against the service's Contract (README,
// "Registration contract"): one that breaks it is logged once, in one line
// that says what to register instead; one without a port is left out, as
// nothing could connect to it.
package discovery

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/watch"
)

// Instance is one instance of a service: a passing one, unless it comes
// from FollowAll.
type Instance struct {
	ID      string
	Node    string
	Address string
	Port    int
	Meta    map[string]string
	// Passing is true when every check of the instance and its node passes.
	Passing bool
}

// Addr is host:port of the instance's registered port.
func (i Instance) Addr() string { return joinHostPort(i.Address, i.Port) }

// MetaAddr is host:port of the port held in meta key (nsqd's http_port),
// false when the meta holds no port.
func (i Instance) MetaAddr(key string) (string, bool) {
	n, err := strconv.Atoi(i.Meta[key])
	if err != nil || n < 1 || n > 65535 {
		return "", false
	}
	return joinHostPort(i.Address, n), true
}

func joinHostPort(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Contract is what the services that discover a service need of its
// registrations.
type Contract struct {
	Service string // the Consul service name
	// Port says which port the registration's own port must be.
	Port string
	// Meta names the meta keys that must hold a port, and which port.
	Meta map[string]string
}

// The contracts of the servers loopstock's services discover. Their
// Consul names are options of the services; these are what each
// registration must carry.
func NSQD(service string) Contract {
	return Contract{Service: service, Port: "nsqd's TCP port (--tcp-address, 4150)",
		Meta: map[string]string{"http_port": "nsqd's HTTP port (--http-address, 4151)"}}
}

// NSQDGate is nsqd's contract on the cluster (mutual TLS): its HTTP API is
// reached through nsqd-gate's HTTPS port.
func NSQDGate(service string) Contract {
	return Contract{Service: service, Port: "nsqd's TCP port (--tcp-address, 4150)",
		Meta: map[string]string{"https_port": "nsqd-gate's HTTPS port (its --https-addr)"}}
}

// NSQDFor is NSQD, or NSQDGate for a client with TLS.
func NSQDFor(service string, tls bool) Contract {
	if tls {
		return NSQDGate(service)
	}
	return NSQD(service)
}

// NSQLookupd is nsqlookupd's contract: consumers use its HTTP port, nsqd
// registers with its TCP port.
func NSQLookupd(service string) Contract {
	return Contract{Service: service, Port: "nsqlookupd's HTTP port (--http-address, 4161)",
		Meta: map[string]string{"tcp_port": "nsqlookupd's TCP port (--tcp-address, 4160)"}}
}

// Redis is Redis's contract.
func Redis(service string) Contract {
	return Contract{Service: service, Port: "the port redis-server listens on (6379)"}
}

// RedisSentinel is a Redis Sentinel's contract.
func RedisSentinel(service string) Contract {
	return Contract{Service: service, Port: "the port redis-sentinel listens on (26379)"}
}

// problem is what is wrong with a registration ("" when nothing), and
// whether the instance is unusable.
func (c Contract) problem(i Instance) (string, bool) {
	port := c.Port
	if port == "" {
		port = "the port it serves on"
	}
	if i.Port <= 0 {
		return "is registered without a port: register " + port + " as the service port", true
	}
	keys := make([]string, 0, len(c.Meta))
	for k := range c.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := i.Meta[k]
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("lacks meta %s (%q): add meta %s = %s", k, v, k, c.Meta[k]), false
		}
		if n == i.Port {
			return fmt.Sprintf("has meta %s equal to its port %d: the port must be %s and meta %s %s", k, n, port, k, c.Meta[k]), false
		}
	}
	return "", false
}

// Watch follows one service.
type Watch struct {
	service  string
	contract Contract
	health   *consul.Health
	log      *logrus.Entry
	reported map[string]string // instance ID → the problem logged for it
	all      bool              // failing instances too, and no contract lines

	mu      sync.Mutex
	current []Instance
	updated chan struct{} // closed and replaced on every change
	err     error
}

// MaxWait is how long one blocking query may wait for a change.
const MaxWait = 5 * time.Minute

// New starts following service until ctx ends; a registration needs a port.
func New(ctx context.Context, client *consul.Client, service string, log *logrus.Entry) *Watch {
	return Follow(ctx, client, Contract{Service: service}, log)
}

// Follow starts following c.Service until ctx ends, checking every
// registration against c.
func Follow(ctx context.Context, client *consul.Client, c Contract, log *logrus.Entry) *Watch {
	return follow(ctx, client, c, false, log)
}

// FollowAll follows every registered instance of c.Service, failing or
// not (Instance.Passing says which), for a monitor that must report an
// instance down rather than lose sight of it. Instances without a port are
// left out, but nothing is logged about them: a Follow of the same service
// (the one that uses the instances) logs each broken registration once.
func FollowAll(ctx context.Context, client *consul.Client, c Contract, log *logrus.Entry) *Watch {
	return follow(ctx, client, c, true, log)
}

func follow(ctx context.Context, client *consul.Client, c Contract, all bool, log *logrus.Entry) *Watch {
	w := &Watch{service: c.Service, contract: c, health: client.Health(), updated: make(chan struct{}),
		log: log.WithField("watch", c.Service), reported: map[string]string{}, all: all}
	go w.run(ctx)
	return w
}

func (w *Watch) run(ctx context.Context) {
	o := watch.Options{
		Wait:    MaxWait,
		Backoff: watch.Backoff{First: 250 * time.Millisecond, Max: 10 * time.Second},
		OnError: w.failed,
	}
	watch.Run(ctx, o, func(q *consul.QueryOptions) ([]*consul.ServiceEntry, *consul.QueryMeta, error) {
		return w.health.Service(w.service, "", !w.all, q)
	}, func(entries []*consul.ServiceEntry) (watch.Next, error) {
		w.set(w.check(instances(entries)))
		return watch.WaitForChange, nil
	})
}

// failed keeps the last known instances while Consul is unreachable, and
// says so in Current's error until it answers again.
func (w *Watch) failed(err error, retryIn time.Duration) error {
	w.setErr(fmt.Errorf("consul query for service %q: %w", w.service, err))
	w.log.WithError(err).WithField("retry_in", retryIn).Warn("consul unreachable; keeping the last known instances")
	return nil
}

// check leaves out the instances nothing could connect to and logs each
// broken registration once (again only if it changes).
func (w *Watch) check(list []Instance) []Instance {
	seen := make(map[string]bool, len(list))
	out := list[:0:0]
	for _, i := range list {
		seen[i.ID] = true
		p, unusable := w.contract.problem(i)
		if p != "" && w.reported[i.ID] != p && !w.all {
			note := "; it is used meanwhile"
			if unusable {
				note = "; it is left out meanwhile"
			}
			w.log.WithFields(logrus.Fields{"instance": i.ID, "node": i.Node}).Warnf(
				"consul service %q instance %q %s (README, \"Registration contract\")%s", w.service, i.ID, p, note)
		}
		w.reported[i.ID] = p
		if !unusable {
			out = append(out, i)
		}
	}
	for id := range w.reported {
		if !seen[id] {
			delete(w.reported, id)
		}
	}
	return out
}

func instances(entries []*consul.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, Instance{ID: e.Service.ID, Node: e.Node.Node, Address: addr, Port: e.Service.Port, Meta: e.Service.Meta,
			Passing: e.Checks.AggregatedStatus() == consul.HealthPassing})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (w *Watch) set(list []Instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = nil
	if equal(w.current, list) && w.current != nil {
		return
	}
	w.current = list
	close(w.updated)
	w.updated = make(chan struct{})
	w.log.WithField("instances", len(list)).Debug("service instances changed")
}

func (w *Watch) setErr(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

func equal(a, b []Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Addr() != b[i].Addr() || a[i].Node != b[i].Node || a[i].Passing != b[i].Passing ||
			!sameMeta(a[i].Meta, b[i].Meta) {
			return false
		}
	}
	return true
}

func sameMeta(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Current returns the passing instances (every one, for FollowAll) as
// last seen (nil before the first answer), a channel that is closed at the
// next change, and the last error talking to Consul (nil once it answers
// again).
func (w *Watch) Current() ([]Instance, <-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.updated, w.err
}

// Wait returns the instances once at least one passes, or ctx's error.
func (w *Watch) Wait(ctx context.Context) ([]Instance, error) {
	for {
		list, changed, _ := w.Current()
		if len(list) > 0 {
			return list, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no passing instance of %q in consul: %w", w.service, ctx.Err())
		case <-changed:
		}
	}
}

// Pick returns the instance on node if there is one, otherwise the first:
// NSQ intends producers to publish to the nsqd on their own host.
func Pick(list []Instance, node string) (Instance, bool) {
	if len(list) == 0 {
		return Instance{}, false
	}
	for _, i := range list {
		if i.Node == node {
			return i, true
		}
	}
	return list[0], true
}

// PickN returns up to n instances: Pick's first, then the others in list
// order. A producer that publishes each message to n nsqd keeps it through
// the loss of n-1 hosts.
func PickN(list []Instance, node string, n int) []Instance {
	first, ok := Pick(list, node)
	if !ok || n < 1 {
		return nil
	}
	out := []Instance{first}
	for _, i := range list {
		if len(out) == n {
			break
		}
		if i.ID != first.ID {
			out = append(out, i)
		}
	}
	return out
}

// NodeName is the local Consul agent's node name, asked (with a deadline)
// until it answers once.
func NodeName(client *consul.Client) func() string {
	var node string
	return func() string {
		if node == "" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var self struct{ Config struct{ NodeName string } }
			if _, err := client.Raw().Query("/v1/agent/self", &self, (&consul.QueryOptions{}).WithContext(ctx)); err == nil {
				node = self.Config.NodeName
			}
		}
		return node
	}
}
