// Package testenv starts the real servers that integration tests run
// against — a Consul agent, nsqlookupd and nsqd, redis-server, and
// loopstock's own binaries — on 127.0.0.1 and free ports, and stops them
// when the test ends. Their output is shown only when the test fails.
package testenv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tool returns the path of a binary: $LOOPSTOCK_TOOLS/name, the
// repository's .bin/name, or name on PATH; the test fails with what to do
// when none exists.
func Tool(t testing.TB, name string) string {
	t.Helper()
	var candidates []string
	if dir := os.Getenv("LOOPSTOCK_TOOLS"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, name))
	}
	if root, err := RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".bin", name))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found in $LOOPSTOCK_TOOLS, .bin/ or PATH: run `make tools build` (or `make test`, which does it)", name)
	return ""
}

// RepoRoot is the folder that holds go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "tools")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

var portMu sync.Mutex
var handedOut = map[int]bool{}

// FreePort returns a loopback TCP port that nothing listens on and that
// this process has not handed out before. It is drawn from 10000-19999,
// below the kernel's ephemeral range (where every outgoing connection of
// the machine takes its local port, so a port seen free there can be gone
// before the server binds it) and below Nomad's dynamic ports.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 1000; i++ {
		p := 10000 + rand.IntN(10000)
		if handedOut[p] {
			continue
		}
		l, err := net.Listen("tcp", Addr(p))
		if err != nil {
			continue
		}
		l.Close()
		handedOut[p] = true
		return p
	}
	t.Fatal("no free port in 10000-19999 after 1000 tries")
	return 0
}

// Addr is 127.0.0.1:port.
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// SyncBuffer collects a process's output; safe for concurrent writes and reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Proc is a server process that can be stopped, killed and started again
// with the same arguments.
type Proc struct {
	Name string
	Path string
	Args []string
	Env  []string
	Dir  string

	t    testing.TB
	out  *SyncBuffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// NewProc prepares a process; Start runs it. Its output is printed if the
// test fails, and it is killed when the test ends.
func NewProc(t testing.TB, name, path string, args ...string) *Proc {
	p := &Proc{Name: name, Path: path, Args: args, t: t, out: &SyncBuffer{}}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() || os.Getenv("LOOPSTOCK_TEST_LOGS") != "" {
			t.Logf("---- output of %s ----\n%s", name, tail(p.out.String(), 200))
		}
	})
	return p
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return "…\n" + s[i+1:]
			}
		}
	}
	return s
}

// Start runs the process (again, after a Kill or Stop).
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			p.t.Fatalf("%s is already running", p.Name)
		}
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(p.out, "==== %s start %s\n", time.Now().Format("15:04:05.000"), p.Name)
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() { p.end(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) { p.end(syscall.SIGTERM, timeout) }

func (p *Proc) end(sig syscall.Signal, timeout time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	fmt.Fprintf(p.out, "==== %s %s %s\n", time.Now().Format("15:04:05.000"), sig, p.Name)
	cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	cmd.Process.Signal(sig)
	if timeout > 0 {
		select {
		case <-done:
			return
		case <-time.After(timeout):
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	<-done
}

// Flag is the value given to the process's flag name ("--http-addr"), or "".
func (p *Proc) Flag(name string) string {
	for i := 0; i+1 < len(p.Args); i++ {
		if p.Args[i] == name {
			return p.Args[i+1]
		}
	}
	return ""
}

// Pid is the running process's id (0 when it is not running).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Eventually polls cond every 50ms until it is true or timeout passes, then
// fails the test with what.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Output is everything the process printed so far, across its starts.
func (p *Proc) Output() string { return p.out.String() }
