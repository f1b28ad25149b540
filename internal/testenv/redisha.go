package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"
	consul "github.com/hashicorp/consul/api"
)

// MasterName is the name the test Sentinels monitor the primary under.
const MasterName = "loopstock"

// SentinelService is the Consul service of the test Sentinels.
const SentinelService = "redis-sentinel"

// ReplicatedRedis is the replicated store on loopback: a primary and a
// replica, each with its append-only file, and three Sentinels. Each
// process reads a config file in its own directory that it rewrites itself
// (a replica's replicaof, a Sentinel's view), so a restarted process comes
// back in the role it last had, as on the cluster.
type ReplicatedRedis struct {
	Nodes     []*Redis
	Sentinels []*Sentinel
}

// Sentinel is one redis-server --sentinel.
type Sentinel struct {
	*Proc
	Addr string
	Port int
}

// SentinelDownAfter is how long the test Sentinels wait before they judge
// the primary down: the failover time the tests see.
const SentinelDownAfter = 2 * time.Second

// StartReplicatedRedis starts the primary, its replica and three Sentinels
// and waits until the replica is in sync and every Sentinel sees both.
func StartReplicatedRedis(t testing.TB) *ReplicatedRedis {
	t.Helper()
	rr := &ReplicatedRedis{}
	for i := 0; i < 2; i++ {
		port := FreePort(t)
		dir := t.TempDir()
		conf := []string{
			"port " + strconv.Itoa(port), "bind 127.0.0.1", "dir " + dir,
			"appendonly yes", "appendfsync always", `save ""`, "loglevel warning",
			"replica-announce-ip 127.0.0.1",
		}
		if i == 1 {
			conf = append(conf, "replicaof 127.0.0.1 "+strconv.Itoa(rr.Nodes[0].Port))
		}
		path := writeConf(t, dir, "redis.conf", conf)
		r := &Redis{Addr: Addr(port), Port: port}
		r.Proc = NewProc(t, fmt.Sprintf("redis-%d", i), Tool(t, "redis-server"), path)
		r.Start()
		r.WaitReady(t)
		rr.Nodes = append(rr.Nodes, r)
	}
	for i := 0; i < 3; i++ {
		port := FreePort(t)
		dir := t.TempDir()
		path := writeConf(t, dir, "sentinel.conf", []string{
			"port " + strconv.Itoa(port), "bind 127.0.0.1", "dir " + dir, "loglevel warning",
			"sentinel announce-ip 127.0.0.1",
			"sentinel monitor " + MasterName + " 127.0.0.1 " + strconv.Itoa(rr.Nodes[0].Port) + " 2",
			"sentinel down-after-milliseconds " + MasterName + " " + strconv.FormatInt(SentinelDownAfter.Milliseconds(), 10),
			"sentinel failover-timeout " + MasterName + " 6000",
			"sentinel parallel-syncs " + MasterName + " 1",
		})
		s := &Sentinel{Addr: Addr(port), Port: port}
		s.Proc = NewProc(t, fmt.Sprintf("sentinel-%d", i), Tool(t, "redis-server"), path, "--sentinel")
		s.Start()
		rr.Sentinels = append(rr.Sentinels, s)
	}
	rr.WaitReplicated(t, 30*time.Second)
	return rr
}

func writeConf(t testing.TB, dir, name string, lines []string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RegisterIn registers each Sentinel in c with a TCP check; the Redis
// nodes themselves are found through the Sentinels.
func (rr *ReplicatedRedis) RegisterIn(t testing.TB, c *Consul) {
	t.Helper()
	for _, s := range rr.Sentinels {
		c.Register(t, SentinelService, "redis-sentinel-"+strconv.Itoa(s.Port), s.Port, nil,
			&consul.AgentServiceCheck{TCP: s.Addr, Interval: "1s", Timeout: "1s"})
	}
}

// Role is what ROLE says of the Redis at addr: master, slave or "" when
// it does not answer.
func Role(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}

// Primary is the node whose ROLE is master and that the Sentinels name
// (nil while they disagree or it does not answer).
func (rr *ReplicatedRedis) Primary() *Redis {
	named := rr.SentinelPrimary()
	for _, n := range rr.Nodes {
		if n.Addr == named && n.Running() && Role(n.Addr) == "master" {
			return n
		}
	}
	return nil
}

// Replica is the node that is not the primary (nil while there is none).
func (rr *ReplicatedRedis) Replica() *Redis {
	p := rr.Primary()
	if p == nil {
		return nil
	}
	for _, n := range rr.Nodes {
		if n != p {
			return n
		}
	}
	return nil
}

// SentinelPrimary is the primary's address as a majority of the running
// Sentinels give it ("" when there is none).
func (rr *ReplicatedRedis) SentinelPrimary() string {
	votes := map[string]int{}
	for _, s := range rr.Sentinels {
		if !s.Running() {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hp, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		cancel()
		c.Close()
		if err == nil && len(hp) == 2 {
			votes[hp[0]+":"+hp[1]]++
		}
	}
	for addr, n := range votes {
		if n >= 2 {
			return addr
		}
	}
	return ""
}

// replicaInSync is true when the primary lists its replica online and the
// replica's link to it is up.
func (rr *ReplicatedRedis) replicaInSync() bool {
	p, r := rr.Primary(), rr.Replica()
	if p == nil || r == nil {
		return false
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "master_link_status:up") &&
		strings.Contains(info, "master_port:"+strconv.Itoa(p.Port)) && strings.Contains(info, "master_sync_in_progress:0")
}

// WaitReplicated waits until every process runs, the Sentinels agree on a
// primary that is master, and the other node replicates from it.
func (rr *ReplicatedRedis) WaitReplicated(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "the Redis replica in sync with the primary the Sentinels name", func() bool {
		for _, s := range rr.Sentinels {
			if !redisPing(s.Addr) {
				return false
			}
		}
		return rr.replicaInSync()
	})
}
