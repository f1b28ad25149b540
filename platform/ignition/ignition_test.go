// Package ignition holds the Butane sources of the Flatcar hosts. These
// tests render each one the way Terraform's templatefile does, translate it
// with Butane in strict mode and validate the Ignition it gives: a warning
// fails as an error does.
package ignition

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ign34 "github.com/coreos/ignition/v2/config/v3_4"
	"github.com/zclconf/go-cty/cty"

	"github.com/loopstock/loopstock/platform/flatcar"
)

// exampleVars are what the Terraform module ignition/ passes.
func exampleVars(role string) map[string]cty.Value {
	return map[string]cty.Value{
		"ssh_authorized_key":   cty.StringVal("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa user@example"),
		"ntp_servers":          cty.StringVal("0.flatcar.pool.ntp.org 1.flatcar.pool.ntp.org"),
		"flatcar_channel":      cty.StringVal("stable"),
		"datacenter":           cty.StringVal("dc1"),
		"server_count":         cty.NumberIntVal(3),
		"retry_join":           cty.StringVal(`["provider=aws tag_key=loopstock-cluster tag_value=demo"]`),
		"cluster_cidr":         cty.StringVal("10.0.0.0/16"),
		"role":                 cty.StringVal(role),
		"bootstrap":            cty.BoolVal(role == "server"),
		"consul_version":       cty.StringVal("1.20.2"),
		"nomad_version":        cty.StringVal("1.9.5"),
		"sysext_base_url":      cty.StringVal("https://sysext.example.org/releases"),
		"consul_sysext_sha256": cty.StringVal(strings.Repeat("ab", 32)),
		"nomad_sysext_sha256":  cty.StringVal(strings.Repeat("cd", 32)),
	}
}

func check(name string, src []byte, role string) error {
	rendered, err := flatcar.Render(name, src, exampleVars(role))
	if err != nil {
		return err
	}
	_, err = flatcar.Translate(name, rendered)
	return err
}

func sources(t *testing.T) []string {
	files, _ := filepath.Glob("*.yaml")
	snippets, _ := filepath.Glob("snippets/*.yaml")
	if len(files) != 2 || len(snippets) != len(flatcar.Snippets) {
		t.Fatalf("butane sources: %v %v; the snippets must be those flatcar.Snippets and the terraform module list", files, snippets)
	}
	return append(files, snippets...)
}

func TestEveryButaneSourceTranslatesStrictlyAndValidates(t *testing.T) {
	for _, f := range sources(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{"server", "client"} {
			if err := check(f, src, role); err != nil {
				t.Errorf("%s (role %s):\n%v", f, role, err)
			}
		}
	}
}

func TestNodesMergeAllSnippets(t *testing.T) {
	for _, role := range []string{"server", "client"} {
		out, err := flatcar.Node(".", role, exampleVars(role))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		for _, want := range []string{"/etc/consul.d/consul.hcl", "/etc/flatcar/update.conf", "/etc/systemd/journald.conf.d/10-limits.conf",
			"/etc/extensions/consul.raw", "loopstock-reboot.timer", "ssh-ed25519"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("%s config lacks %s", role, want)
			}
		}
		if bytes.Contains(out, []byte("BEGIN EC PRIVATE KEY")) || bytes.Contains(out, []byte("encrypt =")) {
			t.Errorf("%s config holds a secret: secrets never go in user data", role)
		}
	}
}

func TestAMisspeltKeyFails(t *testing.T) {
	src, _ := os.ReadFile("client.yaml")
	bad := bytes.Replace(src, []byte("    - path: /etc/docker/daemon.json\n      mode:"), []byte("    - path: /etc/docker/daemon.json\n      mdoe:"), 1)
	if bytes.Equal(bad, src) {
		t.Fatal("the test's edit did not apply")
	}
	if err := check("client.yaml", bad, "client"); err == nil {
		t.Fatal("a misspelt Butane key was accepted")
	}
}

func TestNoGeneratedIgnitionIsCommitted(t *testing.T) {
	for _, pattern := range []string{"*.ign", "*.json", "snippets/*.ign", "snippets/*.json"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			t.Errorf("generated Ignition committed: %v (Terraform renders it with ct_config)", m)
		}
	}
}

func TestVagrantStubFitsVirtualBox(t *testing.T) {
	stub := flatcar.Stub("http://10.0.2.2:8088/ignition/client12.ign")
	if len(stub) > 1024 {
		t.Fatalf("stub of %d bytes: VirtualBox passes at most 1 KiB", len(stub))
	}
	if err := flatcar.Validate("stub", stub); err != nil {
		t.Fatal(err)
	}
}

// The Vagrant cluster's preparation, end to end, with stand-in sysext images:
// for each provider, every VM's stub (what the Vagrantfile hands the VM) must
// point at a full config that exists under www/ (served to the VMs), parses,
// validates and is the Go rendering of that VM's role, with the agents bound
// to the private network.
func TestVagrantConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a command")
	}
	out, key := vagrantFixture(t)
	cmd := vagrantConfig("--out", out, "--ignition", "../ignition", "--ssh-key-file", key)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vagrant-config: %v\n%s", err, b)
	}
	hosts := map[string]string{"virtualbox": "http://10.0.2.2:8088/", "libvirt": "http://192.168.122.1:8088/"}
	for provider, host := range hosts {
		for _, n := range []string{"server1", "client1", "client2"} {
			stub, err := os.ReadFile(filepath.Join(out, provider, n+"-stub.ign"))
			if err != nil {
				t.Fatalf("%s %s: %v", provider, n, err)
			}
			if len(stub) > 1024 || flatcar.Validate(n, stub) != nil {
				t.Errorf("%s %s: stub of %d bytes, or invalid", provider, n, len(stub))
			}
			var s struct {
				Ignition struct {
					Config struct{ Replace struct{ Source string } }
				}
			}
			if err := json.Unmarshal(stub, &s); err != nil {
				t.Fatal(err)
			}
			src := s.Ignition.Config.Replace.Source
			if !strings.HasPrefix(src, host) {
				t.Errorf("%s %s: the stub fetches %q, not from the host as %s VMs reach it (%s)", provider, n, src, provider, host)
				continue
			}
			full, err := os.ReadFile(filepath.Join(out, "www", strings.TrimPrefix(src, host)))
			if err != nil {
				t.Errorf("%s %s: the stub points at a config that is not served: %v", provider, n, err)
				continue
			}
			if err := flatcar.Validate(n, full); err != nil {
				t.Errorf("%s %s: %v", provider, n, err)
			}
			files := fileContents(t, full)
			if !strings.Contains(files["/etc/consul.d/consul.hcl"], flatcar.VagrantCIDR) || !strings.Contains(files["/etc/nomad.d/nomad.hcl"], flatcar.VagrantCIDR) {
				t.Errorf("%s %s: the agents are not bound to the private network %s", provider, n, flatcar.VagrantCIDR)
			}
			if !bytes.Contains(full, []byte(host+"sysext/consul-1.21.4-x86-64.raw")) {
				t.Errorf("%s %s: the sysext images do not come from the host", provider, n)
			}
			if (n == "server1") != strings.Contains(files["/etc/consul.d/consul.hcl"], "bootstrap_expect") {
				t.Errorf("%s %s: the config is not that of its role", provider, n)
			}
		}
	}
	for _, n := range []string{"server1", "client1", "client2"} {
		script, _ := os.ReadFile(filepath.Join(out, n+"-install-secrets"))
		if !bytes.Contains(script, []byte("/etc/loopstock/secrets/ca.pem")) || !bytes.Contains(script, []byte("touch /etc/loopstock/secrets/ready")) {
			t.Errorf("%s: install script incomplete", n)
		}
		if (n == "server1") != bytes.Contains(script, []byte("consul-bootstrap.token")) {
			t.Errorf("%s: the bootstrap token goes to the first server only", n)
		}
		// The tokens to create (every ConsulTokens accessor) and the jobs'
		// secrets: the first server only.
		for _, tok := range flatcar.ConsulTokens {
			if f := "/etc/loopstock/secrets/consul-" + tok + ".accessor"; (n == "server1") != bytes.Contains(script, []byte(f)) {
				t.Errorf("%s: %s goes to the first server only", n, f)
			}
		}
		for _, tok := range []string{"loopstock", "prometheus"} {
			if f := "/etc/loopstock/secrets/consul-" + tok + ".token"; (n == "server1") != bytes.Contains(script, []byte(f)) {
				t.Errorf("%s: %s goes to the first server only", n, f)
			}
		}
	}
	// The operator's copies of the jobs' Consul tokens (make nomad-run's
	// CONSUL_TOKEN and PROMETHEUS_CONSUL_TOKEN).
	for _, f := range []string{"loopstock.token", "prometheus.token"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || len(b) == 0 {
			t.Errorf("the operator's %s: %v, %d bytes", f, err, len(b))
		}
	}
	first, _ := os.ReadFile(filepath.Join(out, "ca.pem"))
	if b, err := vagrantConfig("--out", out, "--ignition", "../ignition", "--ssh-key-file", key).CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, b)
	}
	if again, _ := os.ReadFile(filepath.Join(out, "ca.pem")); !bytes.Equal(first, again) || len(first) == 0 {
		t.Error("a second run changed the cluster's CA")
	}
}

// An image that cannot be read must stop vagrant-config, not give the hash
// of whatever was read (Ignition would then refuse the image at boot).
func TestVagrantConfigFailsOnAnUnreadableImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a command")
	}
	out, key := vagrantFixture(t)
	image := filepath.Join(out, "www", "sysext", "consul-1.21.4-x86-64.raw")
	os.Remove(image)
	if err := os.Mkdir(image, 0o755); err != nil { // opens, but every read fails
		t.Fatal(err)
	}
	b, err := vagrantConfig("--out", out, "--ignition", "../ignition", "--ssh-key-file", key).CombinedOutput()
	if err == nil || !bytes.Contains(b, []byte("consul-1.21.4-x86-64.raw")) {
		t.Fatalf("vagrant-config with an unreadable image: err %v, output:\n%s", err, b)
	}
}

// vagrantFixture makes an output folder with stand-in sysext images of the
// pinned versions and Vagrant's public key.
func vagrantFixture(t *testing.T) (out, key string) {
	out = t.TempDir()
	os.MkdirAll(filepath.Join(out, "www", "sysext"), 0o755)
	os.WriteFile(filepath.Join(out, "www", "sysext", "consul-1.21.4-x86-64.raw"), []byte("consul image"), 0o644)
	os.WriteFile(filepath.Join(out, "www", "sysext", "nomad-1.10.0-x86-64.raw"), []byte("nomad image"), 0o644)
	key = filepath.Join(out, "key.pub")
	os.WriteFile(key, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa vagrant\n"), 0o644)
	return out, key
}

// vagrantConfig runs the platform module's vagrant-config command with the
// pinned sysext versions.
func vagrantConfig(args ...string) *exec.Cmd {
	cmd := exec.Command("go", append([]string{"run", "./cmd/vagrant-config", "--consul-version", "1.21.4", "--nomad-version", "1.10.0"}, args...)...)
	cmd.Dir = "../platform"
	return cmd
}

// fileContents decodes the inline files of an Ignition config (data URLs,
// gzip-compressed when Butane found it shorter).
func fileContents(t *testing.T, ign []byte) map[string]string {
	t.Helper()
	cfg, _, err := ign34.ParseCompatibleVersion(ign)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range cfg.Storage.Files {
		if f.Contents.Source == nil || !strings.HasPrefix(*f.Contents.Source, "data:") {
			continue
		}
		header, data, _ := strings.Cut(strings.TrimPrefix(*f.Contents.Source, "data:"), ",")
		var raw []byte
		if strings.HasSuffix(header, ";base64") {
			raw, err = base64.StdEncoding.DecodeString(data)
		} else {
			var s string
			s, err = url.PathUnescape(data)
			raw = []byte(s)
		}
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		if f.Contents.Compression != nil && *f.Contents.Compression == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			if raw, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
		}
		out[f.Path] = string(raw)
	}
	return out
}
