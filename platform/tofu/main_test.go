// Package tofu runs the Terraform code with a real OpenTofu: `tofu init
// -backend=false && tofu validate` on every example whose providers are at
// hand, and `tofu apply` of a root that calls only modules/ignition, whose
// Ignition must equal the Go rendering (flatcar.Cluster) of the same inputs.
//
// OpenTofu comes from TOFU_DIR (the tools archive unpacked: tofu and a
// provider mirror, mirror/), else `tofu` on PATH with its own CLI config.
// Without either, every test skips and one line says why.
package tofu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	tofuBin    string // the tofu binary
	mirror     string // a filesystem mirror of the providers, "" with tofu on PATH
	skipReason string

	validated, skipped, equal, compared int
)

func TestMain(m *testing.M) {
	// The checks read terraform/ and ignition/ from the checkout.
	if err := os.Chdir("../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if dir := os.Getenv("TOFU_DIR"); dir != "" {
		tofuBin = filepath.Join(dir, "tofu")
		if _, err := os.Stat(tofuBin); err != nil {
			fmt.Fprintf(os.Stderr, "TOFU_DIR=%s: %v\n", dir, err)
			os.Exit(1)
		}
		if fi, err := os.Stat(filepath.Join(dir, "mirror")); err == nil && fi.IsDir() {
			mirror, _ = filepath.Abs(filepath.Join(dir, "mirror"))
		}
	} else if p, err := exec.LookPath("tofu"); err == nil {
		tofuBin = p
	} else {
		skipReason = "no OpenTofu: set TOFU_DIR (see ../shared/tools/README.md) or put tofu on PATH"
	}
	code := m.Run()
	if skipReason != "" {
		fmt.Println("tofu checks skipped: " + skipReason)
	} else {
		fmt.Printf("examples_validated=%d examples_skipped=%d rendering_equal=%d/%d\n", validated, skipped, equal, compared)
	}
	os.Exit(code)
}
