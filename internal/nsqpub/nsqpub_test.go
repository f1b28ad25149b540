package nsqpub_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqpub"
	"github.com/loopstock/loopstock/internal/testenv"
)

// depth is the number of messages topic holds on the nsqd at httpAddr.
func depth(t *testing.T, httpAddr, topic string) int {
	var stats struct {
		Topics []struct {
			Name  string `json:"topic_name"`
			Depth int    `json:"depth"`
		} `json:"topics"`
	}
	if _, err := testenv.GetJSON("http://"+httpAddr+"/stats?format=json&topic="+topic, &stats); err != nil {
		t.Fatal(err)
	}
	for _, tp := range stats.Topics {
		if tp.Name == topic {
			return tp.Depth
		}
	}
	return 0
}

// With two copies every message is on both nsqd; with one down, a publish
// still succeeds on the other.
func TestCopiesGoToTwoNSQDAndSurviveOneDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul and nsqd")
	}
	c := testenv.StartConsul(t)
	a, b := testenv.StartNSQ(t), testenv.StartNSQ(t)
	a.RegisterIn(t, c)
	b.RegisterIn(t, c)
	c.WaitPassing(t, "nsqd", 2, 30*time.Second)
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := discovery.Follow(ctx, c.Client, discovery.NSQD("nsqd"), logrus.NewEntry(log))
	testenv.Eventually(t, 10*time.Second, "both nsqd in the watch", func() bool {
		list, _, _ := watch.Current()
		return len(list) == 2
	})

	one := nsqpub.New(discovery.NodeName(c.Client), watch, "single", 2*time.Second, logrus.NewEntry(log))
	defer one.Stop()
	two := nsqpub.NewCopies(discovery.NodeName(c.Client), watch, "copied", 2*time.Second, 2, logrus.NewEntry(log))
	defer two.Stop()
	for i := 0; i < 3; i++ {
		if err := one.Publish([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if err := two.Publish([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if da, db := depth(t, a.NSQDHTTP, "single"), depth(t, b.NSQDHTTP, "single"); da+db != 3 || (da != 0 && db != 0) {
		t.Errorf("one copy: depths %d and %d, want 3 on one nsqd", da, db)
	}
	if da, db := depth(t, a.NSQDHTTP, "copied"), depth(t, b.NSQDHTTP, "copied"); da != 3 || db != 3 {
		t.Errorf("two copies: depths %d and %d, want 3 on each", da, db)
	}

	// One nsqd gone before Consul notices: the other acknowledges.
	a.NSQD.Kill()
	if err := two.Publish([]byte("after")); err != nil {
		t.Fatalf("with one of two nsqd down: %v", err)
	}
	if db := depth(t, b.NSQDHTTP, "copied"); db != 4 {
		t.Errorf("the live nsqd holds %d, want 4", db)
	}
	// Once Consul sees it gone, the targets are picked again: only the live one.
	testenv.Eventually(t, 30*time.Second, "the publisher's targets without the dead nsqd", func() bool {
		targets, err := two.Targets()
		return err == nil && len(targets) == 1 && targets[0].Addr() == b.NSQDTCP
	})
	if err := two.Publish([]byte("picked again")); err != nil {
		t.Fatal(err)
	}
	if db := depth(t, b.NSQDHTTP, "copied"); db != 5 {
		t.Errorf("the live nsqd holds %d, want 5", db)
	}
	if got := two.Addr(); got != b.NSQDTCP {
		t.Errorf("health reports nsqd %q, want %s", got, b.NSQDTCP)
	}
	// Both gone: the publish fails, naming them.
	b.NSQD.Kill()
	if err := two.Publish([]byte("lost")); err == nil {
		t.Error("a publish with no nsqd up succeeded")
	}
}
