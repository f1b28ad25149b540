package nomad

import (
	"fmt"
	"os"
	"testing"
)

// The checks read the files of the project's nomad/ folder by relative path.
func TestMain(m *testing.M) {
	if err := os.Chdir("../../nomad"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
