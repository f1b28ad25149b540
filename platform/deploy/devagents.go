package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// The dev agents' addresses: Consul's and Nomad's own defaults, on the
// loopback only.
const (
	DevConsulAddr = "127.0.0.1:8500"
	DevNomadAddr  = "http://127.0.0.1:4646"
	// DevNodeName names the dev agents' node (Consul -node, Nomad name),
	// so that Redis's node never depends on the machine's hostname.
	DevNodeName = "loopstock-dev"
)

// DevAgents are a Consul and a Nomad dev agent on 127.0.0.1, with their
// state, logs and pid files under Dir.
type DevAgents struct {
	Dir      string
	NodeName string // the Nomad client's name, where Redis is pinned
	Consul   *consulapi.Client
	Nomad    *nomadapi.Client
}

// DevClients are the API clients of the dev agents, whoever started them.
func DevClients() (*consulapi.Client, *nomadapi.Client, error) {
	cc := consulapi.DefaultNonPooledConfig()
	// The dev Consul: plain HTTP, no ACLs, whatever the environment holds
	// for a cluster.
	cc.Address, cc.Scheme, cc.Token, cc.TokenFile, cc.TLSConfig = DevConsulAddr, "http", "", "", consulapi.TLSConfig{}
	consul, err := consulapi.NewClient(cc)
	if err != nil {
		return nil, nil, err
	}
	nc := nomadapi.DefaultConfig()
	nc.Address, nc.SecretID, nc.TLSConfig = DevNomadAddr, "", &nomadapi.TLSConfig{}
	nomad, err := nomadapi.NewClient(nc)
	return consul, nomad, err
}

// StartDevAgents starts a Consul and a Nomad dev agent on 127.0.0.1 unless
// one already answers there, and waits until Consul has a leader and Nomad
// a ready client. The agents outlive the caller: StopDevAgents stops them.
// binDir is searched for consul and nomad before PATH.
func StartDevAgents(ctx context.Context, dir, binDir string, out io.Writer) (*DevAgents, error) {
	consul, nomad, err := DevClients()
	if err != nil {
		return nil, err
	}
	a := &DevAgents{Dir: dir, Consul: consul, Nomad: nomad}
	if err := os.MkdirAll(filepath.Join(dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "nomad"), 0o700); err != nil {
		return nil, err
	}
	if _, err := consul.Status().Leader(); err != nil {
		bin, err := lookPath(binDir, "consul", "run make tools (it builds .bin/consul)")
		if err != nil {
			return nil, err
		}
		if err := a.start("consul", bin, "agent", "-dev", "-node="+DevNodeName, "-bind=127.0.0.1", "-client=127.0.0.1",
			"-ui", "-hcl", "disable_update_check = true"); err != nil {
			return nil, err
		}
	}
	if _, err := nomad.Status().Leader(); err != nil {
		bin, err := lookPath(binDir, "nomad", "install Nomad 1.6 or later, or set NOMAD_BIN")
		if err != nil {
			return nil, err
		}
		abs, _ := filepath.Abs(dir)
		config := fmt.Sprintf(`name                 = %q
data_dir             = %q
disable_update_check = true
client {
  host_volume "redis" {
    path = %q
  }
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
consul {
  address = %q
}
`, DevNodeName, filepath.Join(abs, "nomad"), filepath.Join(abs, "redis"), DevConsulAddr)
		if err := os.WriteFile(filepath.Join(dir, "nomad.hcl"), []byte(config), 0o644); err != nil {
			return nil, err
		}
		if err := a.start("nomad", bin, "agent", "-dev", "-bind=127.0.0.1", "-config="+filepath.Join(abs, "nomad.hcl")); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(out, "==> waiting for the dev agents (Consul leader, a ready Nomad client that has found Consul and its drivers)")
	err = poll(ctx, time.Minute, func() error {
		if l, err := consul.Status().Leader(); err != nil || l == "" {
			return fmt.Errorf("Consul has no leader yet (%v): see %s", err, filepath.Join(dir, "consul.log"))
		}
		nodes, _, err := nomad.Nodes().List(nil)
		if err != nil {
			return fmt.Errorf("Nomad does not answer (%v): see %s", err, filepath.Join(dir, "nomad.log"))
		}
		for _, n := range nodes {
			if n.Status != "ready" || n.Name == "" {
				continue
			}
			// Ready is not enough: until Nomad has fingerprinted Consul and
			// the raw_exec driver, a job that needs them is not placed,
			// and nomad job run exits 2 ("failed to place all allocations").
			node, _, err := nomad.Nodes().Info(n.ID, nil)
			if err != nil {
				return err
			}
			if node.Attributes["consul.version"] == "" {
				return fmt.Errorf("the Nomad client has not fingerprinted Consul yet: see %s", filepath.Join(dir, "nomad.log"))
			}
			drivers := []string{"raw_exec"}
			if os.Geteuid() == 0 {
				drivers = append(drivers, "exec") // Redis's, which needs root
			}
			for _, name := range drivers {
				if d := node.Drivers[name]; d == nil || !d.Healthy {
					return fmt.Errorf("the Nomad client's %s driver is not healthy yet: see %s", name, filepath.Join(dir, "nomad.log"))
				}
			}
			a.NodeName = n.Name
			return nil
		}
		return fmt.Errorf("the Nomad dev agent has no ready client with a name (nodes: %d): see %s", len(nodes), filepath.Join(dir, "nomad.log"))
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// start runs an agent in a session of its own, so that it outlives the
// command, with its pid in <name>.pid and its output in <name>.log. A
// clean environment, as a systemd unit has: some shells' certificate
// variables name files that make Nomad's cloud fingerprints fail.
func (a *DevAgents) start(name, bin string, args ...string) error {
	log, err := os.OpenFile(filepath.Join(a.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the %s dev agent: %w", name, err)
	}
	go cmd.Wait() // reaped if it exits while this process still runs
	return os.WriteFile(filepath.Join(a.Dir, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// StopDevAgents stops the agents StartDevAgents started (Nomad first, so
// that it stops its tasks while Consul still answers), waits for them to
// exit so that the next start finds the ports free, and then ends any
// task process they left behind: nothing of the stack keeps running.
func StopDevAgents(dir string, out io.Writer) error {
	var problems []string
	for _, name := range []string{"nomad", "consul"} {
		pidFile := filepath.Join(dir, name+".pid")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && syscall.Kill(pid, syscall.SIGINT) == nil {
			if !exited(pid, 30*time.Second) {
				syscall.Kill(pid, syscall.SIGKILL)
				problems = append(problems, fmt.Sprintf("the %s dev agent (pid %d) had not exited 30 s after SIGINT: killed", name, pid))
				exited(pid, 5*time.Second)
			} else {
				fmt.Fprintf(out, "stopped the %s dev agent\n", name)
			}
		}
		os.Remove(pidFile)
	}
	for _, p := range Leftovers(dir) {
		syscall.Kill(p.Pid, syscall.SIGKILL)
		problems = append(problems, fmt.Sprintf("pid %d (%s) outlived its agent: killed", p.Pid, p.Command))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// Process is one process of the host.
type Process struct {
	Pid     int
	Command string
}

// Leftovers are the processes that run from under dir: the tasks of the
// dev agent (their working directory is in its allocation directories).
func Leftovers(dir string) []Process {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != abs && !strings.HasPrefix(cwd, abs+"/")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, Process{pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))})
	}
	return out
}

func exited(pid int, within time.Duration) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			return true
		}
	}
	return false
}

// zombie: exited, waiting for a parent that is not this process to reap it.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

func lookPath(binDir, name, hint string) (string, error) {
	if name == "nomad" && os.Getenv("NOMAD_BIN") != "" {
		return os.Getenv("NOMAD_BIN"), nil
	}
	if binDir != "" {
		if p := filepath.Join(binDir, name); isExecutable(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not on PATH: %s", name, hint)
	}
	return p, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// poll calls check until it returns nil or a permanent error, or within
// passes; the error then is check's last.
func poll(ctx context.Context, within time.Duration, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		var stop permanent
		if err == nil || errors.As(err, &stop) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// permanent marks an error that no retry can change.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
