package integerapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowapi"
)

// replicatedRig is the store over a real primary, replica and three
// Sentinels, found through a real Consul, as on the cluster.
type replicatedRig struct {
	consul    *testenv.Consul
	rr        *testenv.ReplicatedRedis
	store     *RedisStore
	sentinels *discovery.Watch
}

func newReplicatedRig(t *testing.T) *replicatedRig {
	if testing.Short() {
		t.Skip("needs redis-server and consul")
	}
	c := testenv.StartConsul(t)
	rr := testenv.StartReplicatedRedis(t)
	rr.RegisterIn(t, c)
	c.WaitPassing(t, testenv.SentinelService, 3, 20*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := discovery.Follow(ctx, c.Client, discovery.RedisSentinel(testenv.SentinelService), logging.Discard())
	if _, err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s := NewRedisStore(DialSentinels(w, testenv.MasterName, ClientOptions{ReadTimeout: 1500 * time.Millisecond}),
		StoreOptions{Prefix: "test", Retention: 100, MinReplicas: 1, WaitTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { s.Close() })
	return &replicatedRig{consul: c, rr: rr, store: s, sentinels: w}
}

// onReplica reads a window's count straight from the replica.
func onReplica(t *testing.T, rr *testenv.ReplicatedRedis, startSec int) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: rr.Replica().Addr})
	defer c.Close()
	v, _ := c.HGet(context.Background(), "test:w:"+strconv.FormatInt(base.Add(time.Duration(startSec)*time.Second).UnixMilli(), 10), "count").Result()
	return v
}

func tryPut(s Store, startSec int, pieces ...windowapi.Piece) (windowapi.WriteResult, error) {
	start := base.Add(time.Duration(startSec) * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.Put(ctx, start, windowapi.Write{End: start.Add(5 * time.Second), Fence: 1, Pieces: pieces})
}

// A write is acknowledged only once the replica holds it; with the replica
// frozen it is refused (ErrNotReplicated), and the writer's retry once the
// replica is back is merged once.
func TestAWriteIsAcknowledgedOnlyOnceTheReplicaHasIt(t *testing.T) {
	r := newReplicatedRig(t)
	put(t, r.store, 0, 1, pc(0, 9, 100))
	if got := onReplica(t, r.rr, 0); got != "10" {
		t.Fatalf("acknowledged, but the replica holds count %q, want 10", got)
	}
	replica := r.rr.Replica()
	replica.Signal(syscall.SIGSTOP)
	_, err := tryPut(r.store, 5, pc(10, 19, 200))
	replica.Signal(syscall.SIGCONT)
	if !errors.Is(err, ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("a write with the replica frozen: %v, want ErrNotReplicated saying 0 of 1 replicas", err)
	}
	var res windowapi.WriteResult
	testenv.Eventually(t, 10*time.Second, "the retried write to be acknowledged", func() bool {
		res, err = tryPut(r.store, 5, pc(10, 19, 200))
		return err == nil
	})
	if res.Count != 10 || res.Pieces[0] != windowapi.Duplicate {
		t.Fatalf("the retry of a write that reached the primary: %+v, want it merged once (duplicate, count 10)", res)
	}
	if got := onReplica(t, r.rr, 5); got != "10" {
		t.Fatalf("the replica holds count %q of the retried window, want 10", got)
	}
}

// The store never uses a replica: a client sent to one by Consul refuses
// it and says so.
func TestTheStoreRefusesAReplica(t *testing.T) {
	r := newReplicatedRig(t)
	replica := r.rr.Replica()
	r.consul.Register(t, "redis", "redis-replica", replica.Port, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := discovery.New(ctx, r.consul.Client, "redis", logging.Discard())
	if _, err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s := NewRedisStore(DialConsulRedis(w, ClientOptions{}), StoreOptions{Prefix: "test", Retention: 100})
	defer s.Close()
	err := s.Ping(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "is a replica") {
		t.Fatalf("ping through a replica: %v, want it refused as a replica", err)
	}
}

// The primary's death: the Sentinels promote the replica, the store writes
// there, and every acknowledged window is still served; the old primary
// comes back as a replica.
func TestTheStoreFollowsAFailover(t *testing.T) {
	r := newReplicatedRig(t)
	for i := 0; i < 5; i++ {
		put(t, r.store, i*5, 1, pc(uint64(i*10), uint64(i*10+9), 100))
	}
	old := r.rr.Primary()
	old.Kill()
	killed := time.Now()
	testenv.Eventually(t, 30*time.Second, "the Sentinels to promote the replica", func() bool {
		p := r.rr.SentinelPrimary()
		return p != "" && p != old.Addr
	})
	promoted := time.Since(killed)
	// Reads come back from the new primary before a replica exists again.
	var ws []windowapi.Window
	testenv.Eventually(t, 10*time.Second, "reads from the new primary", func() bool {
		var err error
		ws, err = r.store.Latest(context.Background(), 10)
		return err == nil
	})
	if len(ws) != 5 {
		t.Fatalf("after the failover the store serves %d windows, want the 5 acknowledged", len(ws))
	}
	// No second copy can exist: the write waits (refused, not acknowledged).
	if _, err := tryPut(r.store, 25, pc(50, 59, 100)); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("a write with one Redis left: %v, want ErrNotReplicated", err)
	}
	old.Start()
	testenv.Eventually(t, 30*time.Second, "the old primary to come back as a replica", func() bool {
		return testenv.Role(old.Addr) == "slave"
	})
	r.rr.WaitReplicated(t, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, "the write to be acknowledged with the replica back", func() bool {
		_, err := tryPut(r.store, 25, pc(50, 59, 100))
		return err == nil
	})
	ws, err := r.store.Latest(context.Background(), 10)
	if err != nil || len(ws) != 6 || ws[0].Count != 10 {
		t.Fatalf("after the old primary's return: %+v %v, want 6 windows, the newest counted once", ws, err)
	}
	t.Logf("failover: the Sentinels named a new primary %s after the kill (down-after %s)", promoted.Round(100*time.Millisecond), testenv.SentinelDownAfter)
}

// Every Sentinel down: the store keeps writing to the last primary over
// its pooled connections, and the monitor says so for /health.
func TestEverySentinelDownKeepsTheLastPrimary(t *testing.T) {
	r := newReplicatedRig(t)
	put(t, r.store, 0, 1, pc(0, 9, 100))
	m := newSentinelMonitor(r.sentinels, testenv.MasterName, ClientOptions{}, logging.Discard())
	m.poll(context.Background())
	if h := m.health(); h["sentinels"] != "3 of 3 in consul answer" || h["redis_primary"] != r.rr.Primary().Addr {
		t.Fatalf("health with every Sentinel up: %v", h)
	}
	for _, s := range r.rr.Sentinels {
		s.Kill()
	}
	put(t, r.store, 5, 1, pc(10, 19, 100))
	m.poll(context.Background())
	h := m.health()
	if !strings.HasPrefix(h["sentinels"].(string), "none of") || h["redis_primary"] != r.rr.Nodes[0].Addr {
		t.Fatalf("health with every Sentinel down: %v, want none answering and the last primary kept", h)
	}
}

// BenchmarkPut is a window write through the store: on the primary alone,
// and acknowledged once the replica holds it (WAIT 1), same Redis, same
// run: the ratio is what a second copy costs a write.
func BenchmarkPut(b *testing.B) {
	c := testenv.StartConsul(b)
	rr := testenv.StartReplicatedRedis(b)
	rr.RegisterIn(b, c)
	c.WaitPassing(b, testenv.SentinelService, 3, 20*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := discovery.Follow(ctx, c.Client, discovery.RedisSentinel(testenv.SentinelService), logging.Discard())
	if _, err := w.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	for _, replicas := range []int{0, 1} {
		b.Run(fmt.Sprintf("min_replicas=%d", replicas), func(b *testing.B) {
			s := NewRedisStore(DialSentinels(w, testenv.MasterName, ClientOptions{ReadTimeout: 1500 * time.Millisecond}),
				StoreOptions{Prefix: fmt.Sprintf("bench%d", replicas), Retention: 1000, MinReplicas: replicas, WaitTimeout: 500 * time.Millisecond})
			defer s.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := tryPut(s, i*5, pc(uint64(i*10), uint64(i*10+9), 100)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
