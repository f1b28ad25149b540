package svc_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/svc"
	"github.com/loopstock/loopstock/internal/testenv"
)

// events records what happened, in order.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.list, ", ")
}

type rig struct {
	consul *testenv.Consul
	common cliflags.Common
	addr   string
}

func newRig(t *testing.T) *rig {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	addr := testenv.Addr(testenv.FreePort(t))
	return &rig{consul: c, addr: addr, common: cliflags.Common{ConsulAddr: c.HTTPAddr, HTTPAddr: addr, ServiceID: "thing-1"}}
}

func (r *rig) registered() bool {
	s, _, err := r.consul.Client.Agent().Service("thing-1", nil)
	return err == nil && s != nil
}

// status is /health's status code, 0 when nothing answers.
func (r *rig) status() int {
	code, err := testenv.GetJSON("http://"+r.addr+"/health", nil)
	if err != nil {
		return 0
	}
	return code
}

// run runs the lifecycle in the background; the returned channel has Run's error.
func (r *rig) run(ctx context.Context, setup func(context.Context, *svc.Runtime) (svc.Service, error)) <-chan error {
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, "thing", r.common, logging.Discard(), setup) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the lifecycle did not end")
		return nil
	}
}

func TestStopGoesInStages(t *testing.T) {
	r := newRig(t)
	var ev events
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var lifeCtx context.Context
	done := r.run(ctx, func(ctx context.Context, rt *svc.Runtime) (svc.Service, error) {
		lifeCtx = ctx
		return svc.Service{
			Health: func() (bool, map[string]any) { return true, nil },
			Work: func(ctx context.Context) error {
				<-ctx.Done()
				ev.add("work ended")
				return nil
			},
			Drain: 100 * time.Millisecond,
			Stop: []svc.Stage{{Name: "flush", Do: func(context.Context) error {
				// Out of Consul already (Drain), still serving.
				ev.add("flush")
				if r.registered() {
					ev.add("still registered")
				}
				if code := r.status(); code != http.StatusServiceUnavailable {
					ev.add("health " + http.StatusText(code))
				}
				return nil
			}}},
			Close: []svc.Stage{{Name: "store", Do: func(context.Context) error {
				ev.add("close")
				if r.status() != 0 {
					ev.add("still serving")
				}
				if lifeCtx.Err() != nil {
					ev.add("setup's context ended too early")
				}
				return nil
			}}},
		}, nil
	})
	testenv.Eventually(t, 20*time.Second, "registered and healthy", func() bool { return r.registered() && r.status() == 200 })
	stop()
	if err := wait(t, done); err != nil {
		t.Fatalf("a clean stop returned %v", err)
	}
	if got, want := ev.String(), "work ended, flush, close"; got != want {
		t.Fatalf("stop: %s; want %s", got, want)
	}
	if lifeCtx.Err() == nil {
		t.Error("setup's context outlived Run")
	}
	if r.registered() {
		t.Error("still registered in consul after the stop")
	}
}

func TestAStageThatOverrunsIsLeftBehind(t *testing.T) {
	r := newRig(t)
	var ev events
	ctx, stop := context.WithCancel(context.Background())
	stop() // stop at once: only the stop is tested
	never := make(chan struct{})
	defer close(never)
	done := r.run(ctx, func(context.Context, *svc.Runtime) (svc.Service, error) {
		return svc.Service{
			Work:        func(ctx context.Context) error { <-never; return nil }, // ignores its ctx
			WorkTimeout: 100 * time.Millisecond,
			Stop: []svc.Stage{
				{Name: "stuck", Timeout: 100 * time.Millisecond, Do: func(context.Context) error { <-never; return nil }},
				{Name: "next", Do: func(context.Context) error { ev.add("next"); return nil }},
			},
			Close: []svc.Stage{{Name: "broken", Do: func(context.Context) error { return errors.New("disk gone") }}},
		}, nil
	})
	err := wait(t, done)
	for _, want := range []string{`stop stage "work" did not end within its 100ms deadline`, `stop stage "stuck" did not end within its 100ms deadline`, `stop stage "broken": disk gone`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run returned %v; want it to say %s", err, want)
		}
	}
	if ev.String() != "next" {
		t.Errorf("the stages after the one that overran: %q ran; want next", ev.String())
	}
}

func TestFailingWorkStopsTheServiceWithItsError(t *testing.T) {
	r := newRig(t)
	boom := errors.New("flags differ from the group's")
	var ev events
	done := r.run(context.Background(), func(context.Context, *svc.Runtime) (svc.Service, error) {
		return svc.Service{
			Work: func(context.Context) error { return boom },
			Stop: []svc.Stage{{Name: "flush", Do: func(context.Context) error { ev.add("flush"); return nil }}},
		}, nil
	})
	if err := wait(t, done); !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want the work's error", err)
	}
	if ev.String() != "flush" {
		t.Errorf("stages run: %q; want flush", ev.String())
	}
	if r.registered() || r.status() != 0 {
		t.Error("still registered or serving after a failure")
	}
}

func TestAFailedSetupFreesTheListener(t *testing.T) {
	r := newRig(t)
	err := wait(t, r.run(context.Background(), func(context.Context, *svc.Runtime) (svc.Service, error) {
		return svc.Service{}, errors.New("--retention 3: keep at least 10")
	}))
	if err == nil || !strings.Contains(err.Error(), "retention") {
		t.Fatalf("Run returned %v, want setup's error", err)
	}
	ln, lerr := net.Listen("tcp", r.addr)
	if lerr != nil {
		t.Fatalf("the listener is still held after a failed setup: %v", lerr)
	}
	ln.Close()
}
