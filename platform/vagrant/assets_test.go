// Package vagrant checks the preparation of the Vagrant cluster that needs
// the network, scripts/vagrant-assets, against a local stand-in for Flatcar's
// release server and the sysext bakery: what it builds, and that it refuses
// a file whose checksum is not the published one.
package vagrant

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func hexOf(sum []byte) string { return hex.EncodeToString(sum) }

func bzip2(t *testing.T, data []byte) []byte {
	t.Helper()
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bzip2: %v", err)
	}
	return out
}

// digests is a DIGESTS file as Flatcar's release pipeline writes it (MD5,
// SHA1 and SHA512 sections); the MD5 line carries a wrong value so that a
// script reading the wrong section fails.
func digests(name string, data []byte) []byte {
	s1 := sha512.Sum512(data)
	m := md5.Sum([]byte("not the file"))
	return []byte(fmt.Sprintf("# MD5 HASH\n%s  %s\n# SHA1 HASH\n%s  %s\n# SHA512 HASH\n%s  %s\n",
		hexOf(m[:]), name, strings.Repeat("0", 40), name, hexOf(s1[:]), name))
}

type stand struct {
	files  map[string][]byte
	server *httptest.Server
}

// newStand serves Flatcar's release files under /flatcar/ and the bakery's
// releases under /bakery/<name>-<version>/, on 127.0.0.1.
func newStand(t *testing.T, consulImage, nomadImage, nomadPublished []byte) *stand {
	qcow := make([]byte, 512)
	copy(qcow, "QFI\xfb")
	binary.BigEndian.PutUint64(qcow[24:], 8<<30)
	s := &stand{files: map[string][]byte{}}
	for name, data := range map[string][]byte{
		"flatcar_production_virtualbox_image.vmdk.bz2": bzip2(t, []byte("vmdk disk")),
		"flatcar_production_virtualbox.ovf":            []byte(`<Envelope><References><File ovf:href="flatcar_production_virtualbox_image.vmdk"/></References></Envelope>`),
		"flatcar_production_qemu_image.img.bz2":        bzip2(t, qcow),
	} {
		s.files["/flatcar/"+name] = data
		s.files["/flatcar/"+name+".DIGESTS"] = digests(name, data)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hexOf(h[:]) }
	s.files["/bakery/consul-1.21.4/consul-1.21.4-x86-64.raw"] = consulImage
	s.files["/bakery/consul-1.21.4/SHA256SUMS"] = []byte(fmt.Sprintf("%s  consul-1.21.4-x86-64.raw\n%s  consul-1.21.4-arm64.raw\n", sum(consulImage), sum([]byte("arm"))))
	s.files["/bakery/nomad-1.10.0/nomad-1.10.0-x86-64.raw"] = nomadImage
	s.files["/bakery/nomad-1.10.0/SHA256SUMS"] = []byte(fmt.Sprintf("%s  nomad-1.10.0-x86-64.raw\n", sum(nomadPublished)))
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(s.server.Close)
	return s
}

func (s *stand) run(t *testing.T, out string) ([]byte, error) {
	cmd := exec.Command("../../scripts/vagrant-assets")
	cmd.Env = append(os.Environ(), "CONSUL_VERSION=1.21.4", "NOMAD_VERSION=1.10.0", "FLATCAR_VERSION=4757.1.0",
		"FLATCAR_CHANNEL=beta", "VAGRANT_OUT="+out, "VAGRANT_BOX_ADD=no",
		"FLATCAR_BASE_URL="+s.server.URL+"/flatcar", "SYSEXT_RELEASES_URL="+s.server.URL+"/bakery",
		"GNUPGHOME="+t.TempDir()) // no keys: the signature is reported unchecked
	return cmd.CombinedOutput()
}

// tarFiles lists a gzipped tar's regular files with their contents.
func tarFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
}

func TestVagrantAssetsBuildsTheBoxesAndChecksEveryFile(t *testing.T) {
	consul, nomad := []byte("consul sysext"), []byte("nomad sysext")
	s := newStand(t, consul, nomad, nomad)
	out := t.TempDir()
	if b, err := s.run(t, out); err != nil {
		t.Fatalf("vagrant-assets: %v\n%s", err, b)
	}
	vbox := tarFiles(t, filepath.Join(out, "boxes", "flatcar-4757.1.0-virtualbox.box"))
	var names []string
	for n := range vbox {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "box.ovf flatcar_production_virtualbox_image.vmdk metadata.json" ||
		string(vbox["flatcar_production_virtualbox_image.vmdk"]) != "vmdk disk" {
		t.Errorf("virtualbox box holds %v", names)
	}
	lv := tarFiles(t, filepath.Join(out, "boxes", "flatcar-4757.1.0-libvirt.box"))
	var meta struct {
		Provider, Format string
		VirtualSize      int `json:"virtual_size"`
	}
	if err := json.Unmarshal(lv["metadata.json"], &meta); err != nil || meta.Provider != "libvirt" || meta.Format != "qcow2" || meta.VirtualSize != 8 {
		t.Errorf("libvirt box metadata %s (%v)", lv["metadata.json"], err)
	}
	if len(lv["box.img"]) != 512 {
		t.Errorf("libvirt box.img of %d bytes", len(lv["box.img"]))
	}
	sums, _ := os.ReadFile(filepath.Join(out, "www", "sysext", "SHA256SUMS"))
	for _, img := range []string{"consul-1.21.4-x86-64.raw", "nomad-1.10.0-x86-64.raw"} {
		if !strings.Contains(string(sums), "  "+img+"\n") {
			t.Errorf("www/sysext/SHA256SUMS lacks %s:\n%s", img, sums)
		}
		if _, err := os.Stat(filepath.Join(out, "www", "sysext", img)); err != nil {
			t.Error(err)
		}
	}
	if strings.Contains(string(sums), "arm64") {
		t.Errorf("SHA256SUMS keeps images that are not served:\n%s", sums)
	}
}

func TestVagrantAssetsRefusesAnImageWithAnotherHash(t *testing.T) {
	s := newStand(t, []byte("consul sysext"), []byte("tampered nomad"), []byte("nomad sysext"))
	out := t.TempDir()
	b, err := s.run(t, out)
	if err == nil || !strings.Contains(string(b), "nomad-1.10.0-x86-64.raw: its SHA256 is not the published") {
		t.Fatalf("vagrant-assets accepted a sysext image with another hash: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(out, "www", "sysext", "nomad-1.10.0-x86-64.raw")); err == nil {
		t.Error("the image with another hash was kept")
	}
	// A Flatcar image with another SHA-512 than its DIGESTS.
	s = newStand(t, []byte("consul sysext"), []byte("nomad sysext"), []byte("nomad sysext"))
	s.files["/flatcar/flatcar_production_qemu_image.img.bz2"] = bzip2(t, []byte("another image"))
	b, err = s.run(t, t.TempDir())
	if err == nil || !strings.Contains(string(b), "flatcar_production_qemu_image.img.bz2: its SHA512 is not the published") {
		t.Fatalf("vagrant-assets accepted a Flatcar image with another hash: %v\n%s", err, b)
	}
}

// cmd/vagrant-config checks a cached image against the bakery's line again.
func TestVagrantConfigRefusesAChangedCachedImage(t *testing.T) {
	consul, nomad := []byte("consul sysext"), []byte("nomad sysext")
	s := newStand(t, consul, nomad, nomad)
	out := t.TempDir()
	if b, err := s.run(t, out); err != nil {
		t.Fatalf("vagrant-assets: %v\n%s", err, b)
	}
	key := filepath.Join(out, "key.pub")
	os.WriteFile(key, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa vagrant\n"), 0o644)
	config := func() ([]byte, error) {
		cmd := exec.Command("go", "run", "./cmd/vagrant-config", "--out", out, "--ignition", "../ignition", "--ssh-key-file", key,
			"--consul-version", "1.21.4", "--nomad-version", "1.10.0")
		cmd.Dir = ".."
		return cmd.CombinedOutput()
	}
	if b, err := config(); err != nil {
		t.Fatalf("vagrant-config on the checked images: %v\n%s", err, b)
	}
	os.WriteFile(filepath.Join(out, "www", "sysext", "consul-1.21.4-x86-64.raw"), []byte("consul sysex"), 0o644)
	if b, err := config(); err == nil || !strings.Contains(string(b), "but the bakery publishes") {
		t.Fatalf("vagrant-config accepted a cached image that changed: %v\n%s", err, b)
	}
}
