package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is one machine of the cluster: a copy-on-write root over the base
// root, booted by systemd-nspawn with systemd as PID 1, on the bridge.
type Host struct {
	Name   string
	Role   string // server or client
	Index  int    // among hosts of its role
	IP     string // on the bridge
	Prefix int    // the bridge network's prefix length
	Root   string // the merged root the container boots
	dir    string // overlay layers and the console log

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	boots   int
	cgroups []string // the host's own cgroup in each hierarchy
}

// NewHost mounts an overlay of base for the host under dir.
func NewHost(dir, base, name, role string, index int, ip string, prefix int) (*Host, error) {
	h := &Host{Name: name, Role: role, Index: index, IP: ip, Prefix: prefix, dir: filepath.Join(dir, name)}
	h.Root = filepath.Join(h.dir, "root")
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, filepath.Join(h.dir, "upper"), filepath.Join(h.dir, "work"))
	if err := run("mount", "-t", "overlay", "overlay", "-o", opts, h.Root); err != nil {
		return nil, err
	}
	return h, nil
}

// loopDevices are bound into every host: systemd-sysext attaches its
// images to loop devices, and a container sees only the nodes it is given.
const loopDevices = 32

// EnsureLoopDevices makes the loop devices the hosts share exist: each in
// the kernel (loop-control's LOOP_CTL_ADD: a device removed since, by a
// host that shut down, is added again, or systemd-sysext in a host would
// be handed a free device beyond those it can see) and its /dev node.
func EnsureLoopDevices() error {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	const loopCtlAdd = 0x4C80
	for i := 0; i < loopDevices; i++ {
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, ctl.Fd(), loopCtlAdd, uintptr(i)); errno != 0 && errno != syscall.EEXIST {
			return fmt.Errorf("adding loop device %d: %w", i, errno)
		}
		p := fmt.Sprintf("/dev/loop%d", i)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := syscall.Mknod(p, syscall.S_IFBLK|0o660, 7<<8|i); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
	}
	return nil
}

// Boot starts the container (again, after a reboot or a kill: the root
// keeps its state). Its console goes to console.log beside the root.
func (h *Host) Boot(bridge string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A node of the machine's /dev can be gone since the last boot (the
	// kernel removes it with its loop device).
	if err := EnsureLoopDevices(); err != nil {
		return err
	}
	args := []string{"-D", h.Root, "--machine=" + h.Name, "--register=no", "--keep-unit", "--boot",
		"--network-bridge=" + bridge, "--capability=all", "--console=read-only", "--bind=/dev/loop-control",
		// Nomad's exec driver (libcontainer) makes a session keyring.
		"--system-call-filter=@keyring"}
	for i := 0; i < loopDevices; i++ {
		args = append(args, fmt.Sprintf("--bind=/dev/loop%d", i))
	}
	log, err := os.OpenFile(filepath.Join(h.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	h.boots++
	fmt.Fprintf(log, "\n===== boot %d =====\n", h.boots)
	procs, err := ownCgroups(h.Name)
	if err != nil {
		log.Close()
		return err
	}
	h.cgroups = h.cgroups[:0]
	for _, p := range procs {
		h.cgroups = append(h.cgroups, filepath.Dir(p))
	}
	// The container starts in cgroups of its own: each host's systemd then
	// manages its own subtree, never another host's.
	cmd := exec.Command("sh", append([]string{"-c", `for f in $CGROUP_PROCS; do echo $$ > "$f"; done; exec systemd-nspawn "$@"`, "nspawn"}, args...)...)
	// A clean environment, as a machine's init has.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CGROUP_PROCS=" + strings.Join(procs, " ")}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("%s: systemd-nspawn: %w", h.Name, err)
	}
	h.cmd, h.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		err := cmd.Wait()
		log.Close()
		h.mu.Lock()
		h.exitErr = err
		h.mu.Unlock()
		close(exited)
	}(h.exited)
	return nil
}

// Exited is closed when the container of the current boot has stopped.
func (h *Host) Exited() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exited
}

// Rebooted reports whether the last boot ended with a reboot request
// (systemd-nspawn exits 133 when the container's systemd reboots).
func (h *Host) Rebooted() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ee, ok := h.exitErr.(*exec.ExitError)
	return ok && ee.ExitCode() == 133
}

// Leader is the PID, in this namespace, of the container's systemd.
func (h *Host) Leader() (int, error) {
	h.mu.Lock()
	cmd := h.cmd
	h.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, fmt.Errorf("%s is not booted", h.Name)
	}
	return findInit(cmd.Process.Pid)
}

// findInit walks the descendants of pid for the process that is PID 1 of
// its own PID namespace.
func findInit(pid int) (int, error) {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "NSpid:" && f[2] == "1" {
					return p, nil
				}
			}
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					queue = append(queue, n)
				}
			}
		}
	}
	return 0, fmt.Errorf("no container init under pid %d yet", pid)
}

// Exec runs a command on the host, as root, in all its namespaces, with
// stdin, and returns its combined output.
func (h *Host) Exec(ctx context.Context, stdin string, args ...string) (string, error) {
	pid, err := h.Leader()
	if err != nil {
		return "", err
	}
	full := append([]string{"-t", strconv.Itoa(pid), "-a", "env", "-i", "PATH=/opt/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %s: %w: %s", h.Name, strings.Join(args, " "), err, tail(out.Bytes(), 10))
	}
	return out.String(), nil
}

// Sh runs a shell command line on the host.
func (h *Host) Sh(ctx context.Context, script string) (string, error) {
	return h.Exec(ctx, "", "bash", "-c", script)
}

// Kill stops the machine hard, as a power cut does: SIGKILL to its init
// ends every process of the container at once.
func (h *Host) Kill() error {
	pid, err := h.Leader()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-h.Exited():
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: still running 30 s after SIGKILL of its init", h.Name)
	}
}

// Poweroff asks the host's systemd to power off, waits, and unmounts the
// root.
func (h *Host) Poweroff() {
	if pid, err := h.Leader(); err == nil {
		syscall.Kill(pid, syscall.Signal(38)) // SIGRTMIN+4: systemd powers off
		select {
		case <-h.Exited():
		case <-time.After(20 * time.Second):
			h.Kill()
		}
	}
	run("umount", "-l", h.Root)
	h.removeCgroups()
}

// removeCgroups removes the host's cgroups, and the run's group once its
// last host is gone: what the container's systemd made below them is
// empty once it has stopped, and a cgroup directory goes with rmdir only,
// deepest first.
func (h *Host) removeCgroups() {
	for _, top := range h.cgroups {
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
		os.Remove(filepath.Dir(top))
	}
}

// Console is the tail of the host's console log.
func (h *Host) Console(lines int) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "console.log"))
	return tail(b, lines)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ownCgroups makes, in every cgroup hierarchy, a group for the host below
// this process's own, and returns their cgroup.procs files.
func ownCgroups(name string) ([]string, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var procs []string
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		mount := "/sys/fs/cgroup/unified"
		if f[1] != "" {
			mount = "/sys/fs/cgroup/" + strings.TrimPrefix(f[1], "name=")
		}
		if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
			continue // not mounted here
		}
		dir := filepath.Join(mount, f[2])
		for _, level := range []string{fmt.Sprintf("loopstock-cluster-%d", os.Getpid()), name} {
			parent := dir
			dir = filepath.Join(dir, level)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("cgroup for %s: %w", name, err)
			}
			// A new cpuset has no CPUs or memory nodes until given its parent's.
			if f[1] == "cpuset" {
				for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, _ := os.ReadFile(filepath.Join(parent, file))
					if err := os.WriteFile(filepath.Join(dir, file), v, 0o644); err != nil {
						return nil, fmt.Errorf("cgroup for %s: %s: %w", name, file, err)
					}
				}
			}
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	return procs, nil
}
