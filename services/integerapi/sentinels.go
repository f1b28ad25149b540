package integerapi

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/go-redis/redis/v8"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
)

// sentinelMonitor asks every Sentinel in Consul, every few seconds, which
// Redis is the primary, for /health and for log lines that say what
// happened: a failover, a Sentinel lost, all of them lost. The failover
// client does its own asking; this only reports.
type sentinelMonitor struct {
	watch  *discovery.Watch
	master string
	conn   ClientOptions // how to reach a Sentinel: user, password, TLS
	log    *logrus.Entry

	mu        sync.Mutex
	clients   map[string]*redis.SentinelClient
	listed    int
	reachable int
	primary   string // the primary most Sentinels name; kept while none answers
}

func newSentinelMonitor(watch *discovery.Watch, master string, client ClientOptions, log *logrus.Entry) *sentinelMonitor {
	return &sentinelMonitor{watch: watch, master: master, conn: client, log: log, clients: map[string]*redis.SentinelClient{}}
}

// run polls until ctx ends.
func (m *sentinelMonitor) run(ctx context.Context, every time.Duration) {
	defer m.close()
	for {
		m.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (m *sentinelMonitor) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.clients {
		c.Close()
	}
}

func (m *sentinelMonitor) poll(ctx context.Context) {
	list, _, _ := m.watch.Current()
	votes := map[string]int{}
	reachable := 0
	seen := map[string]bool{}
	for _, inst := range list {
		addr := inst.Addr()
		seen[addr] = true
		c := m.client(addr)
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		hp, err := c.GetMasterAddrByName(qctx, m.master).Result()
		cancel()
		if err != nil || len(hp) != 2 {
			m.log.WithError(err).WithField("sentinel", addr).Debug("sentinel did not answer")
			continue
		}
		reachable++
		votes[net.JoinHostPort(hp[0], hp[1])]++
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for addr, c := range m.clients {
		if !seen[addr] {
			c.Close()
			delete(m.clients, addr)
		}
	}
	primary := m.primary
	if best := mostVoted(votes); best != "" {
		primary = best
	}
	switch {
	case reachable == 0 && (m.reachable > 0 || m.listed == 0 && len(list) > 0 || m.listed != len(list)):
		m.log.WithFields(logrus.Fields{"sentinels_in_consul": len(list), "last_primary": m.primary}).
			Warn("no Redis Sentinel answers: keeping the last primary on the pooled connections; new connections wait for a Sentinel")
	case reachable > 0 && reachable < len(list) && reachable != m.reachable:
		m.log.WithFields(logrus.Fields{"reachable": reachable, "sentinels_in_consul": len(list)}).Warn("a Redis Sentinel does not answer")
	case reachable > 0 && m.reachable == 0 && m.listed > 0:
		m.log.WithField("reachable", reachable).Info("Redis Sentinels answer again")
	}
	if primary != m.primary && m.primary != "" {
		m.log.WithFields(logrus.Fields{"from": m.primary, "to": primary}).Warn("the Sentinels moved the Redis primary (failover): connections to the old one are closed")
	}
	m.listed, m.reachable, m.primary = len(list), reachable, primary
}

func (m *sentinelMonitor) client(addr string) *redis.SentinelClient {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[addr]
	if !ok {
		c = redis.NewSentinelClient(&redis.Options{Addr: addr, Username: m.conn.Username, Password: m.conn.Password,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return m.conn.dial(ctx, network, addr, SentinelIdentity)
			},
			DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
			MaxRetries: -1, PoolSize: 1})
		m.clients[addr] = c
	}
	return c
}

// mostVoted is the address most Sentinels name (the smallest on a tie,
// so the answer does not flap).
func mostVoted(votes map[string]int) string {
	addrs := make([]string, 0, len(votes))
	for a := range votes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	best := ""
	for _, a := range addrs {
		if best == "" || votes[a] > votes[best] {
			best = a
		}
	}
	return best
}

// health is what /health says of the Sentinels.
func (m *sentinelMonitor) health() map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]any{"sentinels": fmt.Sprintf("%d of %d in consul answer", m.reachable, m.listed)}
	if m.primary != "" {
		out["redis_primary"] = m.primary
	}
	if m.reachable == 0 {
		out["sentinels"] = fmt.Sprintf("none of %d in consul answers: keeping the last primary on pooled connections", m.listed)
	}
	return out
}
