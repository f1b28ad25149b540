package discovery

import (
	"context"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

func TestWatchFollowsChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := New(ctx, c.Client, "thing", logging.Discard())
	testenv.Eventually(t, 5*time.Second, "the first answer", func() bool { l, _, _ := w.Current(); return l != nil })

	reg := func(id string, port int) {
		err := c.Client.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "thing", ID: id, Address: "127.0.0.1", Port: port,
			Meta: map[string]string{"http_port": "99"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, changed, _ := w.Current()
	reg("thing-1", 1001)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled after a registration")
	}
	list, err := w.Wait(ctx)
	if err != nil || len(list) != 1 || list[0].Addr() != "127.0.0.1:1001" || list[0].Node != "testnode" {
		t.Fatalf("%+v %v", list, err)
	}
	if list[0].Meta["http_port"] != "99" {
		t.Errorf("meta %v", list[0].Meta)
	}
	reg("thing-2", 1002)
	testenv.Eventually(t, 5*time.Second, "two instances", func() bool { l, _, _ := w.Current(); return len(l) == 2 })
	c.Client.Agent().ServiceDeregister("thing-1")
	testenv.Eventually(t, 5*time.Second, "thing-1 gone", func() bool {
		l, _, _ := w.Current()
		return len(l) == 1 && l[0].ID == "thing-2"
	})
	// A critical check takes an instance out.
	c.Client.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "thing", ID: "thing-2", Port: 1002,
		Check: &consul.AgentServiceCheck{TTL: "1m", Status: "critical"}})
	testenv.Eventually(t, 5*time.Second, "the failing instance gone", func() bool { l, _, _ := w.Current(); return len(l) == 0 })
}

func TestPickPrefersTheLocalNode(t *testing.T) {
	list := []Instance{{ID: "a", Node: "n1"}, {ID: "b", Node: "n2"}}
	if i, _ := Pick(list, "n2"); i.ID != "b" {
		t.Errorf("picked %s on n2", i.ID)
	}
	if i, _ := Pick(list, "n9"); i.ID != "a" {
		t.Errorf("picked %s with no local instance", i.ID)
	}
	if _, ok := Pick(nil, "n1"); ok {
		t.Error("picked from nothing")
	}
}

func TestPickNPutsTheLocalNodeFirstAndNeverRepeats(t *testing.T) {
	list := []Instance{{ID: "a", Node: "n1"}, {ID: "b", Node: "n2"}, {ID: "c", Node: "n3"}}
	ids := func(is []Instance) (s string) {
		for _, i := range is {
			s += i.ID
		}
		return s
	}
	for _, c := range []struct {
		node string
		n    int
		want string
	}{{"n2", 2, "ba"}, {"n2", 1, "b"}, {"n3", 5, "cab"}, {"n9", 2, "ab"}, {"n1", 0, ""}} {
		if got := ids(PickN(list, c.node, c.n)); got != c.want {
			t.Errorf("PickN(node %s, %d) = %q, want %q", c.node, c.n, got, c.want)
		}
	}
	if got := PickN(nil, "n1", 2); got != nil {
		t.Errorf("picked %v from nothing", got)
	}
}

// warnings are the warning lines logged so far.
func warnings(h *logtest.Hook) []string {
	var out []string
	for _, e := range h.AllEntries() {
		if e.Level == logrus.WarnLevel {
			out = append(out, e.Message)
		}
	}
	return out
}

// A registration the service cannot use is left out, with one clear line.
func TestARegistrationWithoutAPortIsLeftOutAndLoggedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, hook := logtest.NewNullLogger()
	w := New(ctx, c.Client, "redis", logrus.NewEntry(logger))
	c.Register(t, "redis", "redis-noport", 0, nil, nil)
	c.Register(t, "redis", "redis-ok", 6379, nil, nil)
	testenv.Eventually(t, 5*time.Second, "redis-ok listed", func() bool {
		l, _, _ := w.Current()
		return len(l) > 0 && l[len(l)-1].ID == "redis-ok"
	})
	c.Register(t, "redis", "redis-ok2", 6380, nil, nil) // another change: no second line
	testenv.Eventually(t, 5*time.Second, "redis-ok2 listed", func() bool {
		l, _, _ := w.Current()
		return len(l) > 0 && l[len(l)-1].ID == "redis-ok2"
	})
	l, _, _ := w.Current()
	for _, i := range l {
		if i.ID == "redis-noport" {
			t.Errorf("an instance registered without a port is listed: %+v", i)
		}
	}
	got := warnings(hook)
	if len(got) != 1 || !strings.Contains(got[0], `"redis-noport"`) || !strings.Contains(got[0], "without a port") {
		t.Fatalf("warnings %q; want one line naming redis-noport and its missing port", got)
	}
}

func TestContractsOfTheDiscoveredServers(t *testing.T) {
	meta := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name     string
		contract Contract
		inst     Instance
		says     string // "" when the registration keeps the contract
		unusable bool
	}{
		{"nsqd as the local stack registers it", NSQD("nsqd"), Instance{Port: 4150, Meta: meta("http_port", "4151")}, "", false},
		{"nsqd without its HTTP port", NSQD("nsqd"), Instance{Port: 4150}, "lacks meta http_port", false},
		{"nsqd with a bad HTTP port", NSQD("nsqd"), Instance{Port: 4150, Meta: meta("http_port", "http")}, "lacks meta http_port", false},
		{"nsqd with both ports the same", NSQD("nsqd"), Instance{Port: 4151, Meta: meta("http_port", "4151")}, "nsqd's TCP port", false},
		{"nsqlookupd as the local stack registers it", NSQLookupd("nsqlookupd"), Instance{Port: 4161, Meta: meta("tcp_port", "4160")}, "", false},
		{"nsqlookupd without its TCP port", NSQLookupd("nsqlookupd"), Instance{Port: 4161}, "add meta tcp_port = nsqlookupd's TCP port", false},
		{"nsqlookupd without a port", NSQLookupd("nsqlookupd"), Instance{Meta: meta("tcp_port", "4160")}, "register nsqlookupd's HTTP port", true},
		{"redis", Redis("redis"), Instance{Port: 6379}, "", false},
		{"redis without a port", Redis("redis"), Instance{}, "without a port", true},
	} {
		says, unusable := c.contract.problem(c.inst)
		if (c.says == "") != (says == "") || !strings.Contains(says, c.says) || unusable != c.unusable {
			t.Errorf("%s: %q (unusable %v); want %q (unusable %v)", c.name, says, unusable, c.says, c.unusable)
		}
	}
}

// Follow logs a registration that breaks the contract once, and keeps an
// instance that is still usable.
func TestFollowLogsABrokenContractOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, hook := logtest.NewNullLogger()
	w := Follow(ctx, c.Client, NSQD("nsqd"), logrus.NewEntry(logger))
	c.Register(t, "nsqd", "nsqd-a", 4150, nil, nil)
	testenv.Eventually(t, 5*time.Second, "nsqd-a listed", func() bool { l, _, _ := w.Current(); return len(l) == 1 })
	c.Register(t, "nsqd", "nsqd-b", 5150, map[string]string{"http_port": "5151"}, nil)
	testenv.Eventually(t, 5*time.Second, "nsqd-b listed", func() bool { l, _, _ := w.Current(); return len(l) == 2 })
	got := warnings(hook)
	if len(got) != 1 || !strings.Contains(got[0], `"nsqd-a"`) || !strings.Contains(got[0], "add meta http_port = nsqd's HTTP port") {
		t.Fatalf("warnings %q; want one line saying nsqd-a lacks meta http_port", got)
	}
}

// FollowAll lists failing instances too, saying so, and leaves the
// contract's lines to Follow.
func TestFollowAllKeepsFailingInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, hook := logtest.NewNullLogger()
	w := FollowAll(ctx, c.Client, NSQD("nsqd"), logrus.NewEntry(logger))
	c.Register(t, "nsqd", "nsqd-a", 4150, nil, &consul.AgentServiceCheck{CheckID: "a-ttl", TTL: "1m", Status: consul.HealthCritical})
	passing := func(want bool) func() bool {
		return func() bool {
			l, _, _ := w.Current()
			return len(l) == 1 && l[0].ID == "nsqd-a" && l[0].Passing == want
		}
	}
	testenv.Eventually(t, 5*time.Second, "nsqd-a listed as failing", passing(false))
	if err := c.Client.Agent().UpdateTTL("a-ttl", "", consul.HealthPassing); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "nsqd-a listed as passing", passing(true))
	if got := warnings(hook); len(got) != 0 {
		t.Errorf("FollowAll logged %q; the contract's lines are Follow's", got)
	}
}

func TestMetaAddr(t *testing.T) {
	for _, c := range []struct {
		inst Instance
		want string
	}{
		{Instance{Address: "10.0.0.1", Port: 4150, Meta: map[string]string{"http_port": "4151"}}, "10.0.0.1:4151"},
		{Instance{Port: 4150, Meta: map[string]string{"http_port": "4151"}}, "127.0.0.1:4151"},
		{Instance{Address: "10.0.0.1", Port: 4150}, ""},
		{Instance{Address: "10.0.0.1", Port: 4150, Meta: map[string]string{"http_port": "0"}}, ""},
	} {
		got, ok := c.inst.MetaAddr("http_port")
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%+v: MetaAddr = %q, %v; want %q", c.inst, got, ok, c.want)
		}
	}
}
