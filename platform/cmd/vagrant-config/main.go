// Command vagrant-config prepares the Vagrant cluster (see the Vagrantfile
// and docs/provisioning.md): each node's full Ignition config rendered from
// ignition/ with flatcar.Cluster, as Terraform renders it, for each provider
// (the VMs reach the host at another address under VirtualBox and libvirt);
// the stub each VM is handed, small enough for VirtualBox's guest property,
// that fetches the full config from the host; and the node's secrets
// (generated once, kept in the output folder, copied after boot by Vagrant's
// provisioner, never in Ignition).
//
// Layout of --out: www/ (served to the VMs: sysext/, ignition/<provider>/),
// <provider>/<node>-stub.ign, <node>-install-secrets, and the operator's
// files (ca.pem, cli.pem, tokens).
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/loopstock/loopstock/platform/flatcar"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vagrant-config:", err)
		os.Exit(1)
	}
}

// hosts is the host's file server as the VMs of each provider reach it:
// VirtualBox's NAT gateway, and the host on libvirt's default network (it
// exists before any VM does, so the server can listen there first).
var hosts = map[string]string{
	"virtualbox": "http://10.0.2.2:8088",
	"libvirt":    "http://192.168.122.1:8088",
}

type node struct {
	name, role string
	index      int
}

func run() error {
	out := flag.String("out", ".vagrant/loopstock", "output folder (www/ is served to the VMs)")
	ignDir := flag.String("ignition", "ignition", "folder of the Butane sources")
	sshKey := flag.String("ssh-key-file", "", "public key for the core user (Vagrant's insecure key)")
	clients := flag.Int("clients", 2, "number of clients")
	consulVersion := flag.String("consul-version", "", "Consul sysext version (the Makefile's pin)")
	nomadVersion := flag.String("nomad-version", "", "Nomad sysext version (the Makefile's pin)")
	flag.Parse()
	if *sshKey == "" || *consulVersion == "" || *nomadVersion == "" {
		return errors.New("--ssh-key-file, --consul-version and --nomad-version are required")
	}
	key, err := os.ReadFile(*sshKey)
	if err != nil {
		return err
	}
	www := filepath.Join(*out, "www")
	// The sysext images are served from the host, so a cluster comes up
	// offline once they are cached (make vagrant-assets downloads them).
	consulImage := "consul-" + *consulVersion + "-x86-64.raw"
	nomadImage := "nomad-" + *nomadVersion + "-x86-64.raw"
	consulHash, err := imageHash(filepath.Join(www, "sysext"), consulImage)
	if err != nil {
		return err
	}
	nomadHash, err := imageHash(filepath.Join(www, "sysext"), nomadImage)
	if err != nil {
		return err
	}
	secrets, err := loadOrGenerate(filepath.Join(*out, "secrets.json"), []string{flatcar.VagrantServerIP}, *clients)
	if err != nil {
		return err
	}
	nodes := []node{{"server1", "server", 0}}
	for i := 0; i < *clients; i++ {
		nodes = append(nodes, node{fmt.Sprintf("client%d", i+1), "client", i})
	}
	for provider, host := range hosts {
		cluster := flatcar.VagrantCluster(strings.TrimRight(string(key), "\r\n"), host+"/sysext",
			*consulVersion, consulHash, *nomadVersion, nomadHash)
		if err := os.MkdirAll(filepath.Join(www, "ignition", provider), 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(*out, provider), 0o755); err != nil {
			return err
		}
		for _, n := range nodes {
			var full []byte
			if n.role == "server" {
				full, err = cluster.Server(*ignDir, n.index)
			} else {
				full, err = cluster.Client(*ignDir)
			}
			if err != nil {
				return err
			}
			rel := "ignition/" + provider + "/" + n.name + ".ign"
			if err := os.WriteFile(filepath.Join(www, rel), full, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(*out, provider, n.name+"-stub.ign"), flatcar.Stub(host+"/"+rel), 0o644); err != nil {
				return err
			}
		}
	}
	for _, n := range nodes {
		script := flatcar.InstallScript(secrets.Files(n.role, n.index))
		if err := os.WriteFile(filepath.Join(*out, n.name+"-install-secrets"), []byte(script), 0o600); err != nil {
			return err
		}
	}
	// What an operator needs to talk to the cluster.
	for name, content := range map[string]string{
		"ca.pem": secrets.CA, "cli.pem": secrets.Certs["cli"].Cert, "cli-key.pem": secrets.Certs["cli"].Key,
		"consul-bootstrap.token": secrets.Tokens["consul-bootstrap"].Secret, "nomad-bootstrap.token": secrets.Tokens["nomad-bootstrap"].Secret,
		"loopstock.token":  secrets.Tokens["loopstock"].Secret,  // the services' Consul token (CONSUL_TOKEN for make nomad-run)
		"prometheus.token": secrets.Tokens["prometheus"].Secret, // Prometheus's (PROMETHEUS_CONSUL_TOKEN for make nomad-run)
	} {
		if err := os.WriteFile(filepath.Join(*out, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("vagrant-config: %d nodes in %s\n", len(nodes), *out)
	return nil
}

// imageHash is the SHA-256 of dir/name, which Ignition checks before it
// installs the image. When make vagrant-assets left the bakery's published
// checksums beside the images (SHA256SUMS), the image must match its line:
// a cached file that was cut short or changed is caught here, not at boot.
func imageHash(dir, name string) (string, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("%w: run make vagrant-assets once (it downloads the sysext images)", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	published, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if errors.Is(err, os.ErrNotExist) {
		return sum, nil
	} else if err != nil {
		return "", err
	}
	defer published.Close()
	sc := bufio.NewScanner(published)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && strings.TrimPrefix(fields[1], "*") == name {
			if fields[0] != sum {
				return "", fmt.Errorf("%s: SHA-256 %s, but the bakery publishes %s: delete it and run make vagrant-assets", name, sum, fields[0])
			}
			return sum, nil
		}
	}
	return sum, sc.Err()
}

// loadOrGenerate keeps a cluster's secrets across runs: re-rendering must
// not change the CA of running nodes. They are made anew only when the kept
// ones lack a certificate or token that this cluster's shape needs.
func loadOrGenerate(path string, serverIPs []string, clients int) (*flatcar.Secrets, error) {
	fresh, err := flatcar.GenerateSecrets("dc1", serverIPs, clients)
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(path); err == nil {
		var kept flatcar.Secrets
		if err := json.Unmarshal(data, &kept); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to start a new cluster)", path, err)
		}
		if sameKeys(kept.Certs, fresh.Certs) && sameKeys(kept.Tokens, fresh.Tokens) {
			return &kept, nil
		}
	}
	data, err := json.Marshal(fresh)
	if err != nil {
		return nil, err
	}
	return fresh, os.WriteFile(path, data, 0o600)
}

func sameKeys[V any](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return false
		}
	}
	return true
}
