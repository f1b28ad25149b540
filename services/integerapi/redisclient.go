package integerapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis/v8"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// ClientOptions are how integer-api reaches Redis.
type ClientOptions struct {
	Username string // an ACL user; empty: the password alone
	Password string
	// TLS, when set, is integer-api's certificate: every connection is
	// mutual TLS, to a Redis whose certificate says redis (or a Sentinel,
	// redis-sentinel).
	TLS *tlsid.Source
	DB  int
	// ReadTimeout bounds every reply; a write's WAIT must end before it.
	ReadTimeout time.Duration
}

func (o ClientOptions) readTimeout() time.Duration {
	if o.ReadTimeout > 0 {
		return o.ReadTimeout
	}
	return time.Second
}

var dialer = &net.Dialer{Timeout: time.Second}

// The Consul service names on the store's certificates.
const (
	RedisIdentity    = "redis"
	SentinelIdentity = "redis-sentinel"
)

// dial connects to addr, with TLS when o has a certificate; accept are the
// services the server may be. go-redis applies its own TLSConfig only
// with its own dialer, so the custom dialers below do it here.
func (o ClientOptions) dial(ctx context.Context, network, addr string, accept ...string) (net.Conn, error) {
	conn, err := dialer.DialContext(ctx, network, addr)
	if err != nil || o.TLS == nil {
		return conn, err
	}
	tc := tls.Client(conn, o.TLS.ClientConfig(accept...))
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS with %s: %w", addr, err)
	}
	return tc, nil
}

// DialConsulRedis returns a client of the one Redis that watch lists: a
// moved Redis is followed without a restart, as every new connection dials
// the current address.
func DialConsulRedis(watch *discovery.Watch, o ClientOptions) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: "consul:redis", // replaced by the dialer below
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			list, _, werr := watch.Current()
			if len(list) == 0 {
				if werr != nil {
					return nil, fmt.Errorf("no passing redis in consul: %v", werr)
				}
				return nil, errors.New("no passing redis in consul")
			}
			return o.dial(ctx, network, list[0].Addr(), RedisIdentity)
		},
		OnConnect: requirePrimary,
		Username:  o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: time.Second, ReadTimeout: o.readTimeout(), WriteTimeout: time.Second,
		MaxRetries: 1, PoolSize: 32, MinIdleConns: 2, PoolTimeout: 2 * time.Second,
	})
}

// sentinelSlots is how many of Consul's Sentinels the failover client
// starts from; it learns any others from them (SENTINEL SENTINELS).
const sentinelSlots = 5

// redisLogger sends go-redis's own lines (a new primary, a Sentinel
// found or failing) to the service's log.
type redisLogger struct{ log *logrus.Entry }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.WithField("component", "go-redis").Infof(format, v...)
}

// sentinelSlot names the i-th passing Sentinel in Consul, whichever that
// is when a connection is made, so Sentinels that move are followed.
func sentinelSlot(i int) string { return "consul-sentinel:" + strconv.Itoa(i) }

// DialSentinels returns go-redis's failover client for master: it asks the
// Sentinels (found through sentinels, a Consul watch) where the primary
// is, connects only to a Redis whose ROLE is master, and on a
// +switch-master closes its connections to the old primary.
func DialSentinels(sentinels *discovery.Watch, master string, o ClientOptions) *redis.Client {
	slots := make([]string, sentinelSlots)
	for i := range slots {
		slots[i] = sentinelSlot(i)
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: master, SentinelAddrs: slots,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if rest, ok := strings.CutPrefix(addr, "consul-sentinel:"); ok {
				i, _ := strconv.Atoi(rest)
				list, _, werr := sentinels.Current()
				if len(list) == 0 {
					return nil, fmt.Errorf("no passing redis sentinel in consul (%v)", werr)
				}
				i %= len(list) // fewer Sentinels than slots: some twice
				return o.dial(ctx, network, list[i].Addr(), SentinelIdentity)
			}
			// A Sentinel the others told of (Consul lists it too), or the
			// primary they named: only a Redis may be that.
			list, _, _ := sentinels.Current()
			for _, s := range list {
				if s.Addr() == addr {
					return o.dial(ctx, network, addr, SentinelIdentity)
				}
			}
			return o.dial(ctx, network, addr, RedisIdentity)
		},
		// Sentinels know integer-api by the same user and password as Redis.
		SentinelUsername: o.Username, SentinelPassword: o.Password,
		OnConnect: requirePrimary,
		Username:  o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: time.Second, ReadTimeout: o.readTimeout(), WriteTimeout: time.Second,
		MaxRetries: 1, PoolSize: 32, MinIdleConns: 2, PoolTimeout: 2 * time.Second,
		// Pooled connections are never closed for idling: with every
		// Sentinel unreachable they are what keeps the last primary in use.
		IdleTimeout: -1,
	})
}

// ErrNotPrimary is a connection refused because its Redis is a replica.
var ErrNotPrimary = errors.New("redis is not the primary")

// requirePrimary refuses a connection to a replica (a Redis that Consul or
// a stale Sentinel answer still names, demoted since): nothing is read
// from or written to it. Sentinels (the failover client's own
// connections) answer ROLE with "sentinel" and pass.
func requirePrimary(ctx context.Context, cn *redis.Conn) error {
	cmd := redis.NewSliceCmd(ctx, "role")
	_ = cn.Process(ctx, cmd)
	role, err := cmd.Result()
	if err != nil {
		return fmt.Errorf("ROLE: %w", err)
	}
	if len(role) == 0 {
		return errors.New("ROLE answered nothing")
	}
	switch r, _ := role[0].(string); r {
	case "master", "sentinel":
		return nil
	case "slave":
		of := ""
		if len(role) >= 3 {
			of = fmt.Sprintf(" of %v:%v", role[1], role[2])
		}
		// go-redis returns errors.Unwrap of an OnConnect error: wrapped
		// once more, what it returns is this whole sentence.
		return fmt.Errorf("on connect: %w", fmt.Errorf("%w: it is a replica%s; waiting for the primary", ErrNotPrimary, of))
	default:
		return fmt.Errorf("ROLE answered %q", r)
	}
}
