// Package ignition holds the Butane sources of the Flatcar hosts. These
// tests render each one the way Terraform's templatefile does, translate it
// with Butane in strict mode and validate the Ignition it gives: a warning
// fails as an error does.
package ignition

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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

// The Vagrant cluster's preparation, end to end, with stand-in sysext images.
func TestVagrantConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a command")
	}
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "www", "sysext"), 0o755)
	os.WriteFile(filepath.Join(out, "www", "sysext", "consul-1.20.2-x86-64.raw"), []byte("consul image"), 0o644)
	os.WriteFile(filepath.Join(out, "www", "sysext", "nomad-1.9.5-x86-64.raw"), []byte("nomad image"), 0o644)
	key := filepath.Join(out, "key.pub")
	os.WriteFile(key, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa vagrant\n"), 0o644)
	cmd := vagrantConfig("--out", out, "--ignition", "../ignition", "--ssh-key-file", key)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vagrant-config: %v\n%s", err, b)
	}
	for _, n := range []string{"server1", "client1", "client2"} {
		full, err := os.ReadFile(filepath.Join(out, "www", "ignition", n+".ign"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if json.Unmarshal(full, &cfg) != nil || flatcar.Validate(n, full) != nil {
			t.Errorf("%s: invalid full config", n)
		}
		stub, _ := os.ReadFile(filepath.Join(out, n+"-stub.ign"))
		if len(stub) > 1024 || !bytes.Contains(stub, []byte("/ignition/"+n+".ign")) {
			t.Errorf("%s: stub %q", n, stub)
		}
		script, _ := os.ReadFile(filepath.Join(out, n+"-install-secrets"))
		if !bytes.Contains(script, []byte("/etc/loopstock/secrets/ca.pem")) || !bytes.Contains(script, []byte("touch /etc/loopstock/secrets/ready")) {
			t.Errorf("%s: install script incomplete", n)
		}
		if (n == "server1") != bytes.Contains(script, []byte("consul-bootstrap.token")) {
			t.Errorf("%s: the bootstrap token goes to the first server only", n)
		}
	}
	first, _ := os.ReadFile(filepath.Join(out, "ca.pem"))
	vagrantConfig("--out", out, "--ignition", "../ignition", "--ssh-key-file", key).Run()
	if again, _ := os.ReadFile(filepath.Join(out, "ca.pem")); !bytes.Equal(first, again) || len(first) == 0 {
		t.Error("a second run changed the cluster's CA")
	}
}

// vagrantConfig runs the platform module's vagrant-config command from the
// ignition/ folder.
func vagrantConfig(args ...string) *exec.Cmd {
	cmd := exec.Command("go", append([]string{"run", "./cmd/vagrant-config"}, args...)...)
	cmd.Dir = "../platform"
	return cmd
}
