package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Sysext describes an image in the bakery's layout: the binary under
// usr/bin, its unit under usr/lib/systemd/system, and the extension-release
// file that systemd-sysext matches against the host's os-release.
type Sysext struct {
	Name    string // consul, nomad
	Version string
	Binary  string // path of the static binary to ship
	Unit    string // the unit the image ships, as the bakery's does
}

// FileName is the bakery's naming: NAME-VERSION-x86-64.raw.
func (s Sysext) FileName() string { return fmt.Sprintf("%s-%s-x86-64.raw", s.Name, s.Version) }

// Build makes the squashfs image in dir (kept while the binary is the same)
// and returns its path and SHA-256. Flatcar's images say ID=flatcar with
// SYSEXT_LEVEL=1.0; these say ID=_any so that a Debian root merges them.
func (s Sysext) Build(dir string) (string, string, error) {
	binSum, err := fileSHA256(s.Binary)
	if err != nil {
		return "", "", err
	}
	img := filepath.Join(dir, s.FileName())
	stamp := img + ".from-" + binSum[:16]
	if _, err := os.Stat(stamp); err != nil {
		tree := filepath.Join(dir, s.Name+".tree")
		os.RemoveAll(tree)
		os.Remove(img)
		for name, content := range map[string]string{
			"usr/lib/systemd/system/" + s.Name + ".service":           s.Unit,
			"usr/lib/extension-release.d/extension-release." + s.Name: "ID=_any\n",
		} {
			p := filepath.Join(tree, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", "", err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return "", "", err
			}
		}
		if err := os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755); err != nil {
			return "", "", err
		}
		if err := copyFile(s.Binary, filepath.Join(tree, "usr/bin", s.Name), 0o755); err != nil {
			return "", "", err
		}
		// Uncompressed: the images are built on every new binary and read
		// locally; compression would only cost time.
		if out, err := exec.Command("mksquashfs", tree, img, "-all-root", "-noappend", "-noI", "-noD", "-noF", "-noX", "-quiet").CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("mksquashfs %s: %w: %s", s.Name, err, out)
		}
		os.RemoveAll(tree)
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return "", "", err
		}
	}
	sum, err := fileSHA256(img)
	return img, sum, err
}

// ConsulUnit and NomadUnit are the units the images ship; the hosts' drop-ins
// (ignition/snippets/agents.yaml) set the command line and the user.
const (
	ConsulUnit = `[Unit]
Description=Consul agent
Documentation=https://developer.hashicorp.com/consul/docs
Wants=network-online.target
After=network-online.target
[Service]
ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d
ExecReload=/bin/kill --signal HUP $MAINPID
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
LimitNOFILE=65536
[Install]
WantedBy=multi-user.target
`
	NomadUnit = `[Unit]
Description=Nomad agent
Documentation=https://developer.hashicorp.com/nomad/docs
Wants=network-online.target
After=network-online.target
[Service]
ExecStart=/usr/bin/nomad agent -config=/etc/nomad.d
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
KillSignal=SIGINT
Restart=on-failure
LimitNOFILE=65536
TasksMax=infinity
[Install]
WantedBy=multi-user.target
`
)

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
