package vagrant

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The Vagrantfile boots the box that scripts/vagrant-assets builds, from
// Flatcar's images whose Ignition platform reads a config under Vagrant's
// providers, and hands each VM its stub the way that platform reads it.
// (Flatcar's own Vagrant box boots with the platform `vagrant`, which reads
// none: docs/provisioning.md.)
func TestTheVagrantfileBootsABoxThatReadsIgnition(t *testing.T) {
	vf, err := os.ReadFile("../../Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	assets, err := os.ReadFile("../../scripts/vagrant-assets")
	if err != nil {
		t.Fatal(err)
	}
	box := regexp.MustCompile(`config\.vm\.box = "([^"]+)"`).FindSubmatch(vf)
	added := regexp.MustCompile(`vagrant box add --force --name (\S+)`).FindSubmatch(assets)
	if box == nil || added == nil || string(box[1]) != string(added[1]) {
		t.Fatalf("the Vagrantfile boots box %q; make vagrant-assets adds %q", box, added)
	}
	for _, image := range []string{"flatcar_production_virtualbox_image.vmdk.bz2", "flatcar_production_qemu_image.img.bz2"} {
		if !strings.Contains(string(assets), image) {
			t.Errorf("make vagrant-assets does not build the box from %s", image)
		}
	}
	for what, want := range map[string]string{
		"VirtualBox's guest property (platform virtualbox)": `"guestproperty", "set", :id, "/Ignition/Config"`,
		"QEMU's fw_cfg (platform qemu)":                     `name=opt/org.flatcar-linux/config,file=`,
	} {
		if !strings.Contains(string(vf), want) {
			t.Errorf("the Vagrantfile does not hand the stub through %s", what)
		}
	}
}
