package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ApplyIgnition runs the real Ignition engine's fetch and files stages on
// the host's root, as Flatcar's initramfs does on first boot: users, files
// (remote ones fetched and their SHA-256 checked), links, units and the
// presets that systemd applies on first boot.
func ApplyIgnition(ignitionBin string, config []byte, h *Host) (string, error) {
	work := filepath.Join(h.dir, "ignition")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	cfg := filepath.Join(work, "config.ign")
	if err := os.WriteFile(cfg, config, 0o600); err != nil {
		return "", err
	}
	var log []byte
	for _, stage := range []string{"fetch", "files"} {
		cmd := exec.Command(ignitionBin, "-platform", "file", "-stage", stage, "-root", h.Root,
			"-config-cache", filepath.Join(work, "cache.json"), "-state-file", filepath.Join(work, "state"),
			"-neednet", filepath.Join(work, "neednet"), "-log-to-stdout")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "IGNITION_CONFIG_FILE=" + cfg}
		out, err := cmd.CombinedOutput()
		log = append(log, out...)
		if err != nil {
			return string(log), fmt.Errorf("%s: ignition %s stage: %w\n%s", h.Name, stage, err, tail(out, 30))
		}
	}
	return string(log), nil
}

// WritePlatformNetwork gives the host what its platform's network would:
// its name, its address on the bridge, and a second NIC with VirtualBox's
// NAT address 10.0.2.15 (the same on every host) holding the default route
// (via 10.0.2.2, as VirtualBox's NAT has it), which leads nowhere. An agent
// that advertises "the first private address" picks the NAT one here, as it
// would on every Vagrant VM.
func WritePlatformNetwork(h *Host) error {
	files := map[string]string{
		"etc/hostname":                         h.Name + "\n",
		"etc/systemd/network/10-host0.network": fmt.Sprintf("[Match]\nName=host0\n[Network]\nAddress=%s/%d\nLinkLocalAddressing=no\n", h.IP, h.Prefix),
		// A veth pair inside the host (this kernel has no dummy driver): its
		// far end answers nothing, so the default route leads nowhere.
		"etc/systemd/network/10-nat0.netdev":                                  "[NetDev]\nName=nat0\nKind=veth\n[Peer]\nName=nat0-peer\n",
		"etc/systemd/network/10-nat0.network":                                 "[Match]\nName=nat0\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nLinkLocalAddressing=no\n",
		"etc/systemd/network/10-nat0-peer.network":                            "[Match]\nName=nat0-peer\n[Network]\nLinkLocalAddressing=no\n",
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "@/lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":     "@/lib/systemd/system/systemd-networkd.socket",
	}
	for name, content := range files {
		path := filepath.Join(h.Root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		var err error
		if content[0] == '@' {
			err = os.Symlink(content[1:], path)
		} else {
			err = os.WriteFile(path, []byte(content), 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
