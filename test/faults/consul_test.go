package faults

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// killTimeout is the services' kill_timeout in nomad/*.nomad.hcl: how long
// a graceful stop may take before the process is killed.
const killTimeout = 15 * time.Second

// Every call to Consul has a deadline: with the agent frozen (SIGSTOP:
// connections open, no answer), every service still stops in time.
func TestServicesStopWithinTheirKillTimeoutWhileConsulIsFrozen(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	s := testenv.StartStack(t, testenv.StackOptions{Generators: 1, Averagers: 2, APIs: 1})
	s.WaitHealthy(t, 60*time.Second)
	f := &faultRun{t: t, s: s}
	f.waitLeader(30 * time.Second)
	s.Consul.Signal(syscall.SIGSTOP)
	defer s.Consul.Signal(syscall.SIGCONT)
	time.Sleep(time.Second) // let calls in progress reach the frozen agent; nothing to poll while it is frozen

	procs := append(append(append([]*testenv.Proc{}, s.Generators...), s.Averagers...), s.APIs...)
	took := make([]time.Duration, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			p.Stop(killTimeout + 5*time.Second) // SIGTERM; SIGKILL only after 20s
			took[i] = time.Since(began)
		}()
	}
	wg.Wait()
	for i, p := range procs {
		fmt.Printf("%s stopped in %s with Consul frozen\n", p.Name, took[i].Round(10*time.Millisecond))
		if took[i] > killTimeout {
			t.Errorf("%s took %s to stop with Consul frozen, over its kill_timeout of %s", p.Name, took[i].Round(10*time.Millisecond), killTimeout)
		}
	}
}

// An active averager SIGKILLed and restarted at once (as a supervisor
// does) comes back under the same service ID, whose check passes again:
// the dead process's session must not keep the lock until its TTL.
func TestAnAveragerRestartedAtOnceLeadsWithinFiveSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack")
	}
	s := testenv.StartStack(t, testenv.StackOptions{Generators: 1, Averagers: 1, APIs: 1})
	s.WaitHealthy(t, 60*time.Second)
	f := &faultRun{t: t, s: s}
	f.waitLeader(30 * time.Second)
	a := s.Averagers[0]
	for round := 1; round <= 2; round++ {
		a.Kill()
		a.Start()
		restarted := time.Now()
		f.waitLeaderSince(restarted, 30*time.Second, nil)
		d := time.Since(restarted)
		fmt.Printf("restart %d: active again %s after a SIGKILL and an immediate restart\n", round, d.Round(10*time.Millisecond))
		if d > 5*time.Second {
			t.Errorf("restart %d: the restarted averager led after %s, want within 5s", round, d.Round(10*time.Millisecond))
		}
	}
}
