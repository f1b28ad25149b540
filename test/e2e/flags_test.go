package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/testenv"
)

// An invalid flag stops the binary at once, exit code 2, naming the flag,
// before it tries to reach anything (the Consul address is a dead port).
func TestInvalidFlagExitsAtOnceNamingIt(t *testing.T) {
	cases := map[string][]string{
		"integer-gen":        {"--interval", "0s"},
		"integeraverage-cal": {"--write-token", "long-enough", "--window", "1ms"},
		"integer-api":        {"--write-token", "x"},
	}
	for bin, args := range cases {
		cmd := exec.Command(testenv.Binary(t, bin), append([]string{"--consul-addr", "127.0.0.1:1"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s %v: %v, want exit code 2", bin, args, err)
		}
		flag := args[len(args)-2]
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("%s: stderr %q does not name %s", bin, stderr.String(), flag)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s to refuse a bad flag", bin, d)
		}
	}
	out, err := exec.Command(testenv.Binary(t, "integer-api"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "integer-api version") {
		t.Errorf("--version: %v %q", err, out)
	}
}
