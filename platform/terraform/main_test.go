package terraform

import (
	"fmt"
	"os"
	"testing"
)

// The checks read the files of the project's terraform/ folder by relative path.
func TestMain(m *testing.M) {
	if err := os.Chdir("../../terraform"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
