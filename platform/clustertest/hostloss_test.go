package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis/v8"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/windowcheck"
	"github.com/loopstock/loopstock/platform/cluster"
	"github.com/loopstock/loopstock/platform/deploy"
)

// A host lost for good, one role at a time, under load: what each loss
// cost the API's readers and writers, and whether every window is still
// the audit's.
type hostLoss struct {
	role, host         string
	readGap, writeGap  time.Duration
	recovered, back    time.Duration // services passing again; the host back and in sync
	windows, lost, dup int
}

// gapReader asks integer-api for the newest window every 200 ms, through
// Consul as a client resolving integer-api.service.consul does, trying the
// passing instances in turn. It keeps the longest run of failed reads and
// when a newer window first appeared.
type gapReader struct {
	c    *cl
	mu   sync.Mutex
	fail time.Time // the first failed read of the current run; zero when the last read worked
	gap  time.Duration
	// the newest window's start, and when it was first seen
	newest   string
	newestAt time.Time
	stop     chan struct{}
	done     chan struct{}
}

func (c *cl) startGapReader() *gapReader {
	r := &gapReader{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			start, err := r.c.readAny()
			now := time.Now()
			r.mu.Lock()
			switch {
			case err != nil && r.fail.IsZero():
				r.fail = now
			case err == nil:
				if !r.fail.IsZero() {
					r.gap = max(r.gap, now.Sub(r.fail))
					r.fail = time.Time{}
				}
				if start > r.newest { // RFC 3339 in UTC: ordered as text
					r.newest, r.newestAt = start, now
				}
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// reset starts a new measurement: the longest gap from now on.
func (r *gapReader) reset() (newest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gap = 0
	return r.newest
}

// readGap is the longest run of failed reads since reset, an ongoing one
// included.
func (r *gapReader) readGap() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.fail.IsZero() {
		return max(r.gap, time.Since(r.fail))
	}
	return r.gap
}

// newerThan says when a window newer than start was first read.
func (r *gapReader) newerThan(start string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.newestAt, r.newest > start
}

func (r *gapReader) close() { close(r.stop); <-r.done }

// readAny reads the newest window from any passing integer-api. The
// lookup may be stale, as Consul's DNS answers are by default: a client of
// the API does not wait for a Raft election.
func (c *cl) readAny() (string, error) {
	entries, _, err := c.consulClient.Health().Service("integer-api", "", true, &consulapi.QueryOptions{AllowStale: true})
	if err != nil {
		return "", err
	}
	var addrs []string
	for _, e := range entries {
		addrs = append(addrs, fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port))
	}
	client := http.Client{Timeout: time.Second}
	var errs []string
	for _, i := range rand.Perm(len(addrs)) {
		resp, err := client.Get("http://" + addrs[i] + "/v1/integers/last")
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var w window
		err = json.NewDecoder(resp.Body).Decode(&w)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && err == nil {
			return w.Start, nil
		}
		errs = append(errs, fmt.Sprintf("%s: HTTP %d", addrs[i], resp.StatusCode))
	}
	return "", fmt.Errorf("no integer-api answered (%d passing): %s", len(addrs), strings.Join(errs, "; "))
}

// redisPassword is the password make nomad-run generated and kept.
func redisPassword() string {
	b, _ := os.ReadFile(filepath.Join(repoDir, ".data", "redis-password"))
	return strings.TrimSpace(string(b))
}

// redisPrimary is the address of the Redis primary as the Sentinels on
// the servers that answer name it.
func (c *cl) redisPrimary() (string, error) {
	var errs []string
	for _, s := range c.servers {
		sc := redis.NewSentinelClient(c.redisOptions(s.IP + ":26379"))
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		hp, err := sc.GetMasterAddrByName(ctx, "loopstock").Result()
		cancel()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", s.Name, err))
	}
	return "", fmt.Errorf("no Sentinel names a primary: %s", strings.Join(errs, "; "))
}

// storeInSync: a primary the Sentinels name, whose ROLE is master, with
// its replica online and both Redis and all three Sentinels passing.
func (c *cl) storeInSync() error {
	primary, err := c.redisPrimary()
	if err != nil {
		return err
	}
	rc := redis.NewClient(c.redisOptions(primary))
	defer rc.Close()
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("primary %s: %v", primary, err)
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
		return fmt.Errorf("primary %s: %s", primary, strings.Join(strings.Fields(info), " "))
	}
	for service, n := range map[string]int{"redis": 2, "redis-sentinel": 3} {
		if on, err := c.passing(service); err != nil || len(on) != n {
			return fmt.Errorf("%s passing: %v (%v), want %d", service, on, err, n)
		}
	}
	return nil
}

// storeState is what each client's Redis says of its replication and what
// each server's Sentinel says of the primary and its replicas: the first
// thing to read when the store does not come back in sync.
func (c *cl) storeState() string {
	var b strings.Builder
	ask := func(addr string, args ...any) string {
		rc := redis.NewClient(c.redisOptions(addr))
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		v, err := rc.Do(ctx, args...).Result()
		if err != nil {
			return "error: " + err.Error()
		}
		return strings.Join(strings.Fields(fmt.Sprint(v)), " ")
	}
	for _, h := range c.clients {
		fmt.Fprintf(&b, "redis %s (%s): %s\n", h.Name, h.IP, ask(h.IP+":6379", "info", "replication"))
	}
	for _, h := range c.servers {
		fmt.Fprintf(&b, "sentinel %s: master %s; replicas %s\n", h.Name,
			ask(h.IP+":26379", "sentinel", "master", "loopstock"), ask(h.IP+":26379", "sentinel", "replicas", "loopstock"))
	}
	return b.String()
}

// hostWith is the client whose cluster address is addr's host.
func (c *cl) hostWith(addr string) *cluster.Host {
	ip, _, _ := strings.Cut(addr, ":")
	for _, h := range c.hosts {
		if h.IP == ip {
			return h
		}
	}
	return nil
}

// leaderServer is the server that leads both Consul's and Nomad's Raft.
// When they differ, Nomad's leader is stopped until another server leads
// (a restart alone may win the election again), started again, and the
// three servers let become healthy, until the leaders coincide.
func (c *cl) leaderServer() (*cluster.Host, error) {
	defer c.connectAPIsVia(c.servers[0])
	for try := 0; try < 6; try++ {
		cl, err := c.consulClient.Status().Leader()
		if err != nil {
			return nil, err
		}
		nl, err := c.nomadClient.Status().Leader()
		if err != nil {
			return nil, err
		}
		ch, nh := c.hostWith(cl), c.hostWith(nl)
		if ch == nil || nh == nil {
			return nil, fmt.Errorf("leaders %q and %q are not servers of this cluster", cl, nl)
		}
		if ch == nh {
			return ch, nil
		}
		c.st.logf("Consul leads on %s, Nomad on %s: stopping Nomad on %s until another server leads it", ch.Name, nh.Name, nh.Name)
		c.connectAPIsVia(ch) // not through the server stopped
		if out, err := c.sh(nh, "systemctl stop nomad"); err != nil {
			return nil, fmt.Errorf("stopping nomad on %s: %v: %s", nh.Name, err, out)
		}
		c.waitFor("a Nomad leader other than "+nh.Name, time.Minute, func() error {
			l, err := c.nomadClient.Status().Leader()
			if err == nil && (l == "" || c.hostWith(l) == nh) {
				err = fmt.Errorf("leader %q", l)
			}
			return err
		})
		if out, err := c.sh(nh, "systemctl start nomad"); err != nil {
			return nil, fmt.Errorf("starting nomad on %s: %v: %s", nh.Name, err, out)
		}
		c.waitFor("Nomad's servers healthy again, "+nh.Name+"'s too", 2*time.Minute, func() error {
			h, _, err := c.nomadClient.Operator().AutopilotServerHealth(nil)
			if err == nil && (!h.Healthy || len(h.Servers) != len(c.servers)) {
				err = fmt.Errorf("autopilot: healthy=%v, %d servers", h.Healthy, len(h.Servers))
			}
			return err
		})
	}
	return nil, fmt.Errorf("Consul's and Nomad's leaders stayed on different servers")
}

// hostLosses loses, one at a time and under load, the server that leads
// Consul and Nomad, the client with the Redis primary, the client with the
// active averager, and a client replaced by a fresh host from the same
// Ignition. Each host returns before the next loss; after each, every
// service passes again and every window equals the audit.
func (c *cl) hostLosses() ([]hostLoss, error) {
	lookupds, err := c.passing("nsqlookupd")
	if err != nil || len(lookupds) == 0 {
		return nil, fmt.Errorf("no passing nsqlookupd in Consul: %v", err)
	}
	auth, err := c.auditClient()
	if err != nil {
		return nil, err
	}
	audit := testenv.StartAuditLookupdAs(c.t, lookupds, "integers", deploy.AuditChannel, auth)
	c.waitFor("the audit channel on every nsqd", time.Minute, func() error { return c.channelOnEveryNSQD(deploy.AuditChannel) })
	auditFrom := time.Now().Add(time.Second)
	c.waitFor("the store in sync", 2*time.Minute, c.storeInSync)
	reader := c.startGapReader()
	defer reader.close()
	// nsqlookupd moves when its client is lost: the audit follows it
	// through Consul, as the averager does, and so finds every nsqd again.
	followed := make(chan struct{})
	defer close(followed)
	go func() {
		for {
			select {
			case <-followed:
				return
			case <-time.After(2 * time.Second):
			}
			if addrs, err := c.passing("nsqlookupd"); err == nil {
				audit.AddLookupds(addrs)
			}
		}
	}()

	// First every leaf renewed at once, under the same audit and reader.
	rot, err := c.certRotation(reader, audit, auditFrom)
	c.leafRotation = rot
	if err != nil {
		return nil, fmt.Errorf("the certificate rotation: %w", err)
	}
	c.st.logf("cert rotation: %d leaves renewed; reads unavailable %.1fs, no new window for %.1fs; windows=%d lost=%d doubled=%d",
		rot.renewed, rot.readGap.Seconds(), rot.writeGap.Seconds(), rot.windows, rot.lost, rot.doubled)

	var out []hostLoss
	for _, role := range []string{"leader server", "Redis primary's client", "active averager's client", "replaced client"} {
		var victim *cluster.Host
		switch role {
		case "leader server":
			if victim, err = c.leaderServer(); err != nil {
				return out, err
			}
		case "Redis primary's client":
			primary, err := c.redisPrimary()
			if err != nil {
				return out, err
			}
			victim = c.hostWith(primary)
		case "active averager's client":
			node, err := c.leaderNode()
			if err != nil {
				return out, err
			}
			for _, h := range c.clients {
				if h.Name == node {
					victim = h
				}
			}
		case "replaced client":
			victim = c.clients[1]
		}
		if victim == nil {
			return out, fmt.Errorf("%s: no host found", role)
		}
		loss, err := c.loseHost(role, victim, reader, audit, auditFrom)
		if err != nil {
			return out, fmt.Errorf("%s (%s): %w", role, victim.Name, err)
		}
		c.st.logf("host loss: %s (%s): reads unavailable %.1fs, no new window for %.1fs, services passing again after %s, back in sync after %s; windows=%d lost=%d doubled=%d",
			role, loss.host, loss.readGap.Seconds(), loss.writeGap.Seconds(), loss.recovered.Round(time.Second), loss.back.Round(time.Second), loss.windows, loss.lost, loss.dup)
		out = append(out, *loss)
	}
	return out, nil
}

// loseHost kills victim (SIGKILL to its init: a power cut), waits for the
// others to carry every service, brings it back — a fresh host from the
// same Ignition for the replaced client — and compares the windows.
func (c *cl) loseHost(role string, victim *cluster.Host, reader *gapReader, audit *testenv.Audit, auditFrom time.Time) (*hostLoss, error) {
	loss := &hostLoss{role: role, host: victim.Name}
	if victim.Role == "server" && victim == c.servers[0] {
		c.connectAPIsVia(c.servers[1]) // the test's own view must not go down with it
	}
	newest := reader.reset()
	c.st.logf("host loss: killing %s, the %s", victim.Name, role)
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		return nil, err
	}
	c.waitFor("every service passing again without "+victim.Name, clientLossWithin+30*time.Second, func() error {
		return c.servicesWithout(victim)
	})
	loss.recovered = time.Since(killed)

	if role == "replaced client" {
		c.st.logf("host loss: replacing %s with a fresh host from the same Ignition, same address", victim.Name)
		fresh, err := c.replace(victim)
		if err != nil {
			return nil, err
		}
		victim = fresh
	} else {
		c.st.logf("host loss: booting %s again", victim.Name)
		if err := victim.Boot(bridge); err != nil {
			return nil, err
		}
		c.waitBooted(victim)
	}
	if victim.Role == "client" {
		c.waitFor(victim.Name+"'s nsqd passing again", 3*time.Minute, func() error {
			on, err := c.passingOn("nsqd")
			if err == nil && on[victim.Name] == 0 {
				err = fmt.Errorf("nsqd passing on %v", on)
			}
			return err
		})
	}
	c.waitFor("the store in sync again, every Sentinel back", 4*time.Minute, c.storeInSync)
	loss.back = time.Since(killed)
	c.waitFor("every instance back, "+victim.Name+"'s too", 3*time.Minute, func() error { return c.servicesWithout(nil) })
	c.waitFor("a window stored after the loss", 2*time.Minute, func() error {
		at, ok := reader.newerThan(newest)
		if !ok || at.Before(killed) {
			return fmt.Errorf("newest window still %s", newest)
		}
		loss.writeGap = at.Sub(killed)
		return nil
	})
	loss.readGap = reader.readGap()
	auditTo := time.Now().Add(-5 * time.Second)
	var cmp windowcheck.Comparison
	c.waitFor("every window from the audit's start equal to what nsqd accepted", 3*time.Minute, func() error {
		served, err := c.servedWindows()
		if err != nil {
			return err
		}
		cmp = windowcheck.Compare(auditedBetween(audit.Windows(5*time.Second), auditFrom, auditTo), servedBetween(served, auditFrom, auditTo))
		if cmp.Lost != 0 || cmp.Doubled != 0 {
			return fmt.Errorf("windows=%d lost=%d doubled=%d %v", cmp.Windows, cmp.Lost, cmp.Doubled, first(cmp.Details, 5))
		}
		return nil
	})
	loss.windows, loss.lost, loss.dup = int(cmp.Windows), int(cmp.Lost), int(cmp.Doubled)
	return loss, nil
}

// servicesWithout: every service instance the remaining hosts can carry
// passes again on them (nsqadmin moved to the other client; the lost
// client's own instances stay down with it). victim nil: every instance.
func (c *cl) servicesWithout(victim *cluster.Host) error {
	want := map[string]int{"integer-gen": 2, "integeraverage-cal": 2, "integer-api": 2, "nsqadmin": 1, "redis": 2, "redis-sentinel": 3, "nsqlookupd": 2, "nsqd": 2}
	switch {
	case victim == nil: // every host up: every instance back
	case victim.Role == "client":
		// One instance of each per client (distinct_clients): the lost
		// client's wait for it to return.
		for _, name := range []string{"redis", "nsqd", "nsqlookupd", "integer-gen", "integeraverage-cal", "integer-api"} {
			want[name] = 1
		}
	default:
		want["redis-sentinel"] = 2
	}
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		on, err := c.passingOn(name)
		if err != nil {
			return err
		}
		// Only the others count: Consul lists the dead host's instances as
		// passing until its checks time out.
		n := 0
		for node, k := range on {
			if victim == nil || node != victim.Name {
				n += k
			}
		}
		if n < want[name] {
			missing = append(missing, fmt.Sprintf("%s %d/%d", name, n, want[name]))
		}
	}
	if _, err := c.readAny(); err != nil {
		missing = append(missing, "reads: "+err.Error())
	}
	if len(missing) > 0 {
		return fmt.Errorf("passing: %s", strings.Join(missing, ", "))
	}
	return nil
}
