package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// baseVersion names the cached base root: change it when the packages or
// the stand-ins below change, so a stale cache is never used.
const baseVersion = "bookworm-7"

// basePackages are what a Flatcar host has that the project's units use:
// systemd (with systemd-sysext), resolved, curl, iproute2; and redis-server
// for the jobs (below).
const basePackages = "systemd,systemd-sysv,dbus,iproute2,systemd-resolved,curl,ca-certificates,procps,redis-server"

// standIns are the Flatcar parts that a Debian root lacks, written into the
// base root. They stand in for the OS, never for the project's config.
var standIns = map[string]string{
	// Flatcar's ensure-sysext.service: once the sysext images are merged,
	// reload the units they ship and start what the targets want.
	"etc/systemd/system/ensure-sysext.service": `[Unit]
Description=Load the units of merged sysext images (as Flatcar does)
BindsTo=systemd-sysext.service
After=systemd-sysext.service
DefaultDependencies=no
Before=sysinit.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/systemctl daemon-reload
ExecStart=/usr/bin/systemctl restart --no-block sockets.target timers.target multi-user.target
[Install]
WantedBy=sysinit.target
`,
	"etc/systemd/system/sysinit.target.wants/ensure-sysext.service": "@/etc/systemd/system/ensure-sysext.service",
	// Nomad's exec driver creates cgroups in every v1 controller, which a
	// container sees read-only. A fresh mount of each controller, inside the
	// container's cgroup namespace, is the container's own subtree,
	// writable: bound over the read-only one it lets exec tasks run.
	"etc/systemd/system/cgroup-writable.service": `[Unit]
Description=Writable cgroup controllers for Nomad's exec driver (container hosts only)
Before=nomad.service
DefaultDependencies=no
After=local-fs.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for c in cpuset memory pids freezer devices blkio cpu cpuacct; do mkdir -p /run/cg/$c && mount -t cgroup -o $c cgroup /run/cg/$c && mount --bind /run/cg/$c /sys/fs/cgroup/$c; done'
[Install]
WantedBy=sysinit.target
`,
	"etc/systemd/system/sysinit.target.wants/cgroup-writable.service": "@/etc/systemd/system/cgroup-writable.service",
	// Redis for the jobs: the cluster runs it under Docker, which cannot run
	// in a container; the cluster test runs it with the exec driver instead.
	"etc/systemd/system/redis-server.service": "@/dev/null",
	// A container has no terminal for the first-boot wizard.
	"etc/systemd/system/systemd-firstboot.service": "@/dev/null",
}

// BaseRoot returns a Debian 12 root with systemd, made once with debootstrap
// under cache and kept there (about a minute to five, then instant).
func BaseRoot(cache string, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(cache, "rootfs-"+baseVersion)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	logf("debootstrap: a Debian 12 minbase root with systemd into %s (once)", dir)
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+basePackages, "bookworm", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap: %w\n%s", err, tail(out, 20))
	}
	for name, content := range standIns {
		path := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		var err error
		if len(content) > 0 && content[0] == '@' {
			err = os.Symlink(content[1:], path)
		} else {
			err = os.WriteFile(path, []byte(content), 0o644)
		}
		if err != nil {
			return "", err
		}
	}
	// Flatcar keeps its journal: what a host logged before a reboot stays.
	if err := os.MkdirAll(filepath.Join(tmp, "var/log/journal"), 0o755); err != nil {
		return "", err
	}
	// Flatcar's user, which the SSH snippet gives keys to.
	if out, err := exec.Command("chroot", tmp, "useradd", "-m", "-u", "500", "-U", "-s", "/bin/bash", "core").CombinedOutput(); err != nil {
		return "", fmt.Errorf("useradd core: %w: %s", err, out)
	}
	// Ignition's presets apply on first boot only.
	if err := os.WriteFile(filepath.Join(tmp, "etc/machine-id"), []byte("uninitialized\n"), 0o444); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	return dir, os.Rename(tmp, dir)
}
