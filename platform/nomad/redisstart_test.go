package nomad

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"

	"github.com/loopstock/loopstock/internal/testenv"
)

// The start scripts of the replicated Redis (redis.nomad.hcl, group
// replicas) and of the Sentinels (redis-sentinel.nomad.hcl), as Nomad
// renders them, run by sh with the real redis-server: each "host" is its
// own loopback address, so every Redis listens on 6379 and every Sentinel
// on 26379 as on the cluster.
type storeHosts struct {
	t          *testing.T
	redisTmpl  string
	sentTmpl   string
	password   string
	sentinels  []string // ip:26379
	peers      []string // ip:6379
	dirs       map[string]string
	redisProcs map[string]*testenv.Proc
}

const testRedisPassword = "store-test-password"

func startScript(t *testing.T, file, group string) string {
	t.Helper()
	job := clusterJob(t, file, operatorEnv)
	for _, g := range job.TaskGroups {
		if *g.Name != group {
			continue
		}
		for _, tpl := range g.Tasks[0].Templates {
			if tpl.DestPath != nil && *tpl.DestPath == "local/start.sh" {
				return *tpl.EmbeddedTmpl
			}
		}
	}
	t.Fatalf("%s: no local/start.sh template in group %s", file, group)
	return ""
}

// render does what consul-template does with the script: the passing
// Sentinels and every Redis, as Consul would list them.
func (s *storeHosts) render(tmpl, dataDir string) string {
	out := strings.ReplaceAll(tmpl, `{{ range service "redis-sentinel" }}{{ .Address }}:{{ .Port }} {{ end }}`, strings.Join(s.sentinels, " "))
	out = strings.ReplaceAll(out, `{{ range service "redis|any" }}{{ .Address }}:{{ .Port }} {{ end }}`, strings.Join(s.peers, " "))
	if strings.Contains(out, "{{") {
		s.t.Fatalf("the start script has a template action this test does not render:\n%s", out)
	}
	return strings.ReplaceAll(out, "/data", dataDir)
}

func (s *storeHosts) dir(name string) string {
	if s.dirs[name] == "" {
		s.dirs[name] = s.t.TempDir()
	}
	return s.dirs[name]
}

// redis starts the Redis of host ip (allocation index i) through its
// start script; it returns the process (which may exit: the script
// refuses to start).
func (s *storeHosts) redis(ip string, index int) *testenv.Proc {
	s.t.Helper()
	data, secrets := s.dir(ip+"-data"), s.dir(ip+"-secrets")
	os.WriteFile(filepath.Join(secrets, "auth.conf"), []byte("requirepass "+s.password+"\nmasterauth "+s.password+"\n"), 0o600)
	script := filepath.Join(secrets, "start.sh")
	os.WriteFile(script, []byte(s.render(s.redisTmpl, data)), 0o700)
	p := testenv.NewProc(s.t, "redis@"+ip, "/bin/sh", script)
	p.Env = append([]string{}, "NOMAD_IP_redis="+ip, "NOMAD_ALLOC_INDEX="+strconv.Itoa(index), "NOMAD_SECRETS_DIR="+secrets,
		"REDIS_BIND="+ip, "MASTER=loopstock", "REDISCLI_AUTH="+s.password, "RETRY_AFTER=1")
	p.Start()
	s.redisProcs[ip] = p
	return p
}

func (s *storeHosts) sentinel(ip string) *testenv.Proc {
	s.t.Helper()
	task, secrets := s.dir(ip+"-task"), s.dir(ip+"-secrets")
	os.WriteFile(filepath.Join(secrets, "auth.conf"), []byte("requirepass "+s.password+"\nsentinel auth-pass loopstock "+s.password+"\n"), 0o600)
	script := filepath.Join(secrets, "start.sh")
	os.WriteFile(script, []byte(s.render(s.sentTmpl, "/unused")), 0o700)
	p := testenv.NewProc(s.t, "sentinel@"+ip, "/bin/sh", script)
	p.Env = append([]string{}, "NOMAD_IP_sentinel="+ip, "NOMAD_TASK_DIR="+task, "NOMAD_SECRETS_DIR="+secrets,
		"SENTINEL_BIND="+ip, "MASTER=loopstock", "DOWN_AFTER_MS=1000", "REDISCLI_AUTH="+s.password, "RETRY_AFTER=1")
	p.Start()
	return p
}

func (s *storeHosts) client(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: s.password, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1})
}

func (s *storeHosts) role(ip string) string {
	c := s.client(ip + ":6379")
	defer c.Close()
	v, err := c.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	r, _ := v[0].(string)
	return r
}

func (s *storeHosts) get(ip, key string) string {
	c := s.client(ip + ":6379")
	defer c.Close()
	v, _ := c.Get(context.Background(), key).Result()
	return v
}

// sentinelsName is the primary every Sentinel names ("" while they differ).
func (s *storeHosts) sentinelsName() string {
	named := ""
	for _, a := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, Password: s.password, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		hp, err := c.GetMasterAddrByName(context.Background(), "loopstock").Result()
		c.Close()
		if err != nil || len(hp) != 2 || (named != "" && named != hp[0]) {
			return ""
		}
		named = hp[0]
	}
	return named
}

// An empty Redis never wins: at the store's first start only the first
// allocation starts as primary; a host whose disk is replaced while the
// Sentinels still name it does not start until they have failed over to
// the replica, and then resyncs from it. The data written before is on
// both at the end.
func TestAnEmptyRedisNeverWins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-server and Sentinels")
	}
	testenv.Tool(t, "redis-server")
	s := &storeHosts{t: t, password: testRedisPassword, dirs: map[string]string{}, redisProcs: map[string]*testenv.Proc{},
		redisTmpl: startScript(t, "redis.nomad.hcl", "replicas"), sentTmpl: startScript(t, "redis-sentinel.nomad.hcl", "sentinel")}
	a, b := "127.0.0.2", "127.0.0.3"
	s.peers = []string{a + ":6379", b + ":6379"}
	s.sentinels = []string{"127.0.0.4:26379", "127.0.0.5:26379", "127.0.0.6:26379"}

	// The first start: the second allocation waits for the first.
	pb := s.redis(b, 1)
	testenv.Eventually(t, 10*time.Second, "the second allocation to refuse to start alone", func() bool {
		return !pb.Running() && strings.Contains(pb.Output(), "waiting for the first allocation")
	})
	s.redis(a, 0)
	testenv.Eventually(t, 10*time.Second, "the first allocation to start as the primary", func() bool { return s.role(a) == "master" })
	pb.Start()
	testenv.Eventually(t, 10*time.Second, "the second to start as its replica", func() bool { return s.role(b) == "slave" })
	for _, ip := range []string{"127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		s.sentinel(ip)
	}
	testenv.Eventually(t, 20*time.Second, "every Sentinel to name the first as the primary", func() bool { return s.sentinelsName() == a })

	testenv.Eventually(t, 20*time.Second, "the replica in sync", func() bool {
		c := s.client(b + ":6379")
		defer c.Close()
		info, _ := c.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	pc := s.client(a + ":6379")
	defer pc.Close()
	ctx := context.Background()
	if err := pc.Set(ctx, "window", "acknowledged", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.Do(ctx, "WAIT", 1, 2000).Int64(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d %v", n, err)
	}

	// The primary's host replaced: its disk empty, back before the
	// Sentinels judged it down. It must not start.
	s.redisProcs[a].Kill()
	os.RemoveAll(s.dirs[a+"-data"])
	os.MkdirAll(s.dirs[a+"-data"], 0o700)
	fresh := s.redis(a, 0)
	testenv.Eventually(t, 10*time.Second, "the empty Redis to refuse to start while the Sentinels name it", func() bool {
		return strings.Contains(fresh.Output(), "its disk is empty: not starting")
	})
	if got := s.get(b, "window"); got != "acknowledged" {
		t.Fatalf("the replica holds %q: it was wiped", got)
	}
	testenv.Eventually(t, 30*time.Second, "the Sentinels to fail over to the replica", func() bool { return s.sentinelsName() == b })
	testenv.Eventually(t, 30*time.Second, "the replaced host's Redis to start as a replica and resync", func() bool {
		if !fresh.Running() {
			fresh.Start()
		}
		return s.role(a) == "slave" && s.get(a, "window") == "acknowledged"
	})
	if got := s.get(b, "window"); got != "acknowledged" || s.role(b) != "master" {
		t.Fatalf("the new primary holds %q (role %s)", got, s.role(b))
	}
}
