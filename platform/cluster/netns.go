// Package cluster boots the project's Flatcar hosts as systemd-nspawn
// containers, from the Ignition that Terraform and Vagrant render, applied
// by the real Ignition engine, on a network of their own, and checks them
// from the outside through their real interfaces. One file per concern:
// the network (this file), the base root, the hosts, Ignition, the sysext
// images, the secrets and the checks.
package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// netnsEnv marks a process that already runs in the cluster's own network
// namespace.
const netnsEnv = "LOOPSTOCK_CLUSTER_NETNS"

// InOwnNetwork reports whether this process runs in a network namespace
// of its own (made by ReexecInOwnNetwork).
func InOwnNetwork() bool { return os.Getenv(netnsEnv) == "1" }

// ReexecInOwnNetwork runs this test binary again, with the same arguments,
// in a new network namespace that has only a loopback: everything the
// cluster sends stays on the bridge made inside it. It returns the exit code.
func ReexecInOwnNetwork() (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), nil
		}
		return 1, fmt.Errorf("unshare --net: %w", err)
	}
	return 0, nil
}

// Bridge makes the hosts' bridge with addr (CIDR form: the test's own
// address on it) and brings loopback up.
func Bridge(name, addr string) error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", addr, "dev", name},
		{"link", "set", name, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
