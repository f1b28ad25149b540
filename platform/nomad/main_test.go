package nomad

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// emptyHostnameExec marks a re-execution of the test binary that clears the
// hostname of its own UTS namespace and then runs the command after it.
const emptyHostnameExec = "LOOPSTOCK_EMPTY_HOSTNAME_EXEC"

// The checks read the files of the project's nomad/ folder by relative path.
func TestMain(m *testing.M) {
	if os.Getenv(emptyHostnameExec) == "1" {
		os.Unsetenv(emptyHostnameExec)
		err := syscall.Sethostname(nil)
		if err == nil {
			err = syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
		}
		fmt.Fprintln(os.Stderr, "empty-hostname exec:", err)
		os.Exit(1)
	}
	if err := os.Chdir("../../nomad"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
