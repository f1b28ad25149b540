// Command vagrant-config prepares the Vagrant cluster (see the Vagrantfile
// and docs/provisioning.md): each node's full Ignition config rendered from
// ignition/ like Terraform renders it, the 1 KiB stub that VirtualBox
// passes and that fetches the full config from the host, and the node's
// secrets (generated once, kept in the output folder, copied after boot by
// Vagrant's provisioner, never in Ignition).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/zclconf/go-cty/cty"

	"github.com/loopstock/loopstock/platform/flatcar"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vagrant-config:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", ".vagrant/loopstock", "output folder (served to the VMs as www/)")
	ignDir := flag.String("ignition", "ignition", "folder of the Butane sources")
	sshKey := flag.String("ssh-key-file", "", "public key for the core user (Vagrant's insecure key)")
	serverIP := flag.String("server-ip", "192.168.56.10", "the server's address on the private network")
	clients := flag.Int("clients", 2, "number of clients")
	hostURL := flag.String("host-url", "http://10.0.2.2:8088", "the host's file server as the VMs reach it")
	consulVersion := flag.String("consul-version", "1.20.2", "Consul sysext version")
	nomadVersion := flag.String("nomad-version", "1.9.5", "Nomad sysext version")
	flag.Parse()
	if *sshKey == "" {
		return errors.New("--ssh-key-file is required")
	}
	key, err := os.ReadFile(*sshKey)
	if err != nil {
		return err
	}
	www := filepath.Join(*out, "www")
	if err := os.MkdirAll(filepath.Join(www, "ignition"), 0o755); err != nil {
		return err
	}
	// The sysext images are served from the host, so a cluster comes up
	// offline once they are cached (make vagrant-assets downloads them).
	hash := func(name string) (string, error) {
		f, err := os.Open(filepath.Join(www, "sysext", name))
		if err != nil {
			return "", fmt.Errorf("%w: run make vagrant-assets once (it downloads the sysext images)", err)
		}
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	consulHash, err := hash("consul-" + *consulVersion + "-x86-64.raw")
	if err != nil {
		return err
	}
	nomadHash, err := hash("nomad-" + *nomadVersion + "-x86-64.raw")
	if err != nil {
		return err
	}
	secrets, err := loadOrGenerate(filepath.Join(*out, "secrets.json"), []string{*serverIP}, *clients)
	if err != nil {
		return err
	}
	vars := map[string]cty.Value{
		"ssh_authorized_key": cty.StringVal(string(trimNewline(key))), "ntp_servers": cty.StringVal("0.flatcar.pool.ntp.org"),
		"flatcar_channel": cty.StringVal("stable"), "datacenter": cty.StringVal("dc1"), "server_count": cty.NumberIntVal(1),
		"retry_join": cty.StringVal(fmt.Sprintf("[%q]", *serverIP)), "consul_version": cty.StringVal(*consulVersion),
		"nomad_version": cty.StringVal(*nomadVersion), "sysext_base_url": cty.StringVal(*hostURL + "/sysext"),
		"consul_sysext_sha256": cty.StringVal(consulHash), "nomad_sysext_sha256": cty.StringVal(nomadHash),
	}
	nodes := []struct {
		name, role string
		index      int
	}{{"server1", "server", 0}}
	for i := 0; i < *clients; i++ {
		nodes = append(nodes, struct {
			name, role string
			index      int
		}{fmt.Sprintf("client%d", i+1), "client", i})
	}
	for _, n := range nodes {
		vars["role"] = cty.StringVal(n.role)
		vars["bootstrap"] = cty.BoolVal(n.role == "server" && n.index == 0)
		full, err := flatcar.Node(*ignDir, n.role, vars)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(www, "ignition", n.name+".ign"), full, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, n.name+"-stub.ign"), flatcar.Stub(*hostURL+"/ignition/"+n.name+".ign"), 0o644); err != nil {
			return err
		}
		script := flatcar.InstallScript(secrets.Files(n.role, n.index))
		if err := os.WriteFile(filepath.Join(*out, n.name+"-install-secrets"), []byte(script), 0o600); err != nil {
			return err
		}
	}
	// What an operator needs to talk to the cluster.
	for name, content := range map[string]string{
		"ca.pem": secrets.CA, "cli.pem": secrets.Certs["cli"].Cert, "cli-key.pem": secrets.Certs["cli"].Key,
		"consul-bootstrap.token": secrets.Tokens["consul-bootstrap"].Secret, "nomad-bootstrap.token": secrets.Tokens["nomad-bootstrap"].Secret,
		"loopstock.token": secrets.Tokens["loopstock"].Secret, // the services' Consul token (CONSUL_TOKEN for make nomad-run)
	} {
		if err := os.WriteFile(filepath.Join(*out, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("vagrant-config: %d nodes in %s\n", len(nodes), *out)
	return nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// loadOrGenerate keeps a cluster's secrets across runs: re-rendering must
// not change the CA of running nodes.
func loadOrGenerate(path string, serverIPs []string, clients int) (*flatcar.Secrets, error) {
	if data, err := os.ReadFile(path); err == nil {
		var s flatcar.Secrets
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to start a new cluster)", path, err)
		}
		if len(s.Certs) == 2*len(serverIPs)+clients+1 {
			return &s, nil
		}
	}
	s, err := flatcar.GenerateSecrets("dc1", serverIPs, clients)
	if err != nil {
		return nil, err
	}
	data, _ := json.Marshal(s)
	return s, os.WriteFile(path, data, 0o600)
}
