package ignition

import (
	"fmt"
	"os"
	"testing"
)

// The checks read the files of the project's ignition/ folder by relative path.
func TestMain(m *testing.M) {
	if err := os.Chdir("../../ignition"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
