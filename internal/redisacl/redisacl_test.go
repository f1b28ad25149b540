package redisacl_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"

	"github.com/loopstock/loopstock/internal/redisacl"
	"github.com/loopstock/loopstock/internal/testenv"
)

func passwords() map[string]string {
	pw := map[string]string{}
	for _, u := range redisacl.Users {
		pw[u] = u + "-password-0123456789"
	}
	return pw
}

// startSentinel starts a Sentinel as the job does: its own config file,
// which it rewrites, and the rest on stdin.
func startSentinel(t *testing.T, dir string, port int, stdin string) *testenv.Proc {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "stdin.conf"), []byte(stdin), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.NewProc(t, "sentinel", "/bin/sh", "-c",
		fmt.Sprintf("exec %s %s/sentinel.conf --sentinel - < %s/stdin.conf", testenv.Tool(t, "redis-server"), dir, dir))
	p.Start()
	return p
}

func ping(port int, user, password string) error {
	c := redis.NewClient(&redis.Options{Addr: testenv.Addr(port), Username: user, Password: password, DialTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// A Sentinel writes every user it has into its config at each rewrite,
// and refuses to start on a user defined twice: with the users on stdin,
// its first restart (after a certificate renewal) failed on the cluster.
// In an aclfile they survive any number of restarts.
func TestASentinelRestartsWithItsUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	pw := passwords()
	users, err := redisacl.SentinelUsers(pw)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.acl"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	seed := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor loopstock 127.0.0.1 1 2\n", port, dir)
	if err := os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin := "aclfile " + filepath.Join(dir, "users.acl") + "\n"
	for start := 1; start <= 3; start++ {
		p := startSentinel(t, dir, port, stdin)
		testenv.Eventually(t, 10*time.Second, fmt.Sprintf("start %d: the Sentinel answering its health user", start), func() bool {
			return ping(port, redisacl.Health, pw[redisacl.Health]) == nil
		})
		if err := ping(port, "", ""); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("start %d: PING without a user: %v, want NOAUTH (the default user off)", start, err)
		}
		p.Stop(5 * time.Second)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "sentinel.conf"))
	if strings.Contains(string(conf), "\nuser ") {
		t.Errorf("the Sentinel wrote users into its config:\n%s", conf)
	}
}
