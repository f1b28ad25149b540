package testenv

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis/v8"
	consul "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/devca"
	"github.com/loopstock/loopstock/internal/redisacl"
)

// SecureRedis is a redis-server as the cluster runs it: TLS only (no
// plaintext port), client certificates from the CA required, the default
// user off and the store's ACL users (internal/redisacl).
type SecureRedis struct {
	*Redis
	CA        *devca.CA
	Passwords map[string]string // by ACL user
}

// RedisTLSConfig are the redis.conf lines of TLS with client
// certificates: cert is the file with Redis's certificate and key.
func RedisTLSConfig(cert, roots string) []string {
	return []string{"tls-cert-file " + cert, "tls-key-file " + cert, "tls-ca-cert-file " + roots,
		"tls-auth-clients yes", "tls-replication yes", `tls-protocols "TLSv1.2 TLSv1.3"`}
}

// StartSecureRedis starts Redis with TLS and ACL users, the key prefix
// "loopstock".
func StartSecureRedis(t testing.TB, ca *devca.CA) *SecureRedis {
	t.Helper()
	s := &SecureRedis{CA: ca, Passwords: map[string]string{}}
	for _, u := range redisacl.Users {
		s.Passwords[u] = u + "-password-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	acl, err := redisacl.File("loopstock", s.Passwords)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	aclPath := filepath.Join(dir, "users.acl")
	writeConf(t, dir, "users.acl", strings.Split(strings.TrimSpace(acl), "\n"))
	files := CertFiles(t, ca, "redis")
	port := FreePort(t)
	conf := append([]string{"port 0", "tls-port " + strconv.Itoa(port), "bind 127.0.0.1", "dir " + dir,
		"appendonly yes", "appendfsync always", `save ""`, "loglevel warning", "aclfile " + aclPath},
		RedisTLSConfig(files.Cert, files.Roots)...)
	path := writeConf(t, dir, "redis.conf", conf)
	s.Redis = &Redis{Addr: Addr(port), Port: port}
	s.Proc = NewProc(t, "redis", Tool(t, "redis-server"), path)
	s.Start()
	Eventually(t, 20*time.Second, "redis to answer PING over TLS", func() bool { return s.Client(t, "redis", redisacl.Health).Ping(context.Background()).Err() == nil })
	return s
}

// Client is a go-redis client holding service's certificate, logged in as
// user; the caller closes it.
func (s *SecureRedis) Client(t testing.TB, service, user string) *redis.Client {
	t.Helper()
	src := CertSource(t, s.CA, service)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Username: user, Password: s.Passwords[user],
		TLSConfig: src.ClientConfig("redis"), DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// RegisterIn registers Redis in c with a TCP check (a check that PINGs
// needs a certificate; the cluster's runs redis-cli in the Redis task).
func (s *SecureRedis) RegisterIn(t testing.TB, c *Consul) {
	t.Helper()
	c.Register(t, "redis", "redis-"+strconv.Itoa(s.Port), s.Port, nil, &consul.AgentServiceCheck{TCP: s.Addr, Interval: "1s", Timeout: "1s"})
}
