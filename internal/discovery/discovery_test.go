package discovery

import (
	"context"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

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
