package integerapi

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// Name is the binary's and the Consul service's name.
const Name = "integer-api"

// Options hold every setting of integer-api; NewOptions the defaults.
type Options struct {
	cliflags.Common
	RedisService string
	// RedisSentinelService, when set, replaces RedisService: the primary
	// is whichever Redis these Sentinels name for RedisMaster.
	RedisSentinelService string
	RedisMaster          string
	RedisMinReplicas     int
	RedisWaitTimeout     time.Duration
	RedisPassword        string
	RedisDB              int
	KeyPrefix            string
	Retention            int
	WriteToken           string
	ShutdownDelay        time.Duration
	RedisUser            string
	TLS                  tlsid.Files
	TLSOn                bool
	WriteAddr            string
	Writers              []string
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{RedisService: "redis", RedisMaster: "loopstock", RedisWaitTimeout: 500 * time.Millisecond,
		KeyPrefix: "loopstock", Retention: 17280}
}

// Flags are integer-api's command-line flags.
func Flags() []cli.Flag {
	d := NewOptions()
	env := func(f string) []string { return cliflags.Env(Name, f) }
	return append(append(cliflags.CommonFlags(Name, "127.0.0.1:8080"), cliflags.TLSFlags(Name)...),
		&cli.StringFlag{Name: "redis-service", Value: d.RedisService, EnvVars: env("redis-service"), Usage: "Consul service name of Redis"},
		&cli.StringFlag{Name: "redis-sentinel-service", EnvVars: env("redis-sentinel-service"),
			Usage: "Consul service name of the Redis Sentinels; set, the store is the primary they name for --redis-master (replaces --redis-service)"},
		&cli.StringFlag{Name: "redis-master", Value: d.RedisMaster, EnvVars: env("redis-master"), Usage: "the name the Sentinels monitor the primary under"},
		&cli.IntFlag{Name: "redis-min-replicas", EnvVars: env("redis-min-replicas"),
			Usage: "replicas that must hold a write before it is acknowledged (WAIT); default 1 with --redis-sentinel-service, else 0. 0 accepts writes held by the primary alone (docs/operations.md says what that risks)"},
		&cli.DurationFlag{Name: "redis-wait-timeout", Value: d.RedisWaitTimeout, EnvVars: env("redis-wait-timeout"),
			Usage: "how long a write waits for its replicas before it is answered 503 (and retried by the averager)"},
		&cli.StringFlag{Name: "redis-user", EnvVars: env("redis-user"), Usage: "Redis ACL user (AUTH <user> <password>); empty: the password alone"},
		&cli.StringFlag{Name: "redis-password", EnvVars: env("redis-password"), Usage: "Redis password (AUTH), if any"},
		&cli.StringFlag{Name: "write-addr", EnvVars: env("write-addr"),
			Usage: "with --tls-cert-file: listen address of the mutual-TLS listener that alone accepts window writes (registered as Consul meta write_port)"},
		&cli.StringSliceFlag{Name: "writers", Value: cli.NewStringSlice("integeraverage-cal"), EnvVars: env("writers"),
			Usage: "services whose certificate may write windows on --write-addr"},
		&cli.IntFlag{Name: "redis-db", Value: d.RedisDB, EnvVars: env("redis-db"), Usage: "Redis database number"},
		&cli.StringFlag{Name: "key-prefix", Value: d.KeyPrefix, EnvVars: env("key-prefix"), Usage: "prefix of every Redis key"},
		&cli.IntFlag{Name: "retention", Value: d.Retention, EnvVars: env("retention"), Usage: "windows kept (17280 = one day of 5 s windows); keep it longer than the averager's --max-lateness"},
		&cli.StringFlag{Name: "write-token", EnvVars: env("write-token"), Usage: "token the averager must send to write windows (required)"},
		&cli.DurationFlag{Name: "shutdown-delay", Value: d.ShutdownDelay, EnvVars: env("shutdown-delay"),
			Usage: "on SIGTERM, keep serving this long after leaving Consul (clients that just looked it up still get answers)"},
	)
}

// ReadOptions reads and validates the flags; every error names its flag.
func ReadOptions(c *cli.Context) (Options, error) {
	o := NewOptions()
	var err error
	if o.Common, err = cliflags.ReadCommon(c, Name); err != nil {
		return o, err
	}
	bad := func(flag, format string, args ...any) (Options, error) {
		return o, cliflags.Invalid(Name, flag, format, args...)
	}
	if o.RedisService = c.String("redis-service"); o.RedisService == "" {
		return bad("redis-service", "empty")
	}
	o.RedisSentinelService = c.String("redis-sentinel-service")
	if o.RedisMaster = c.String("redis-master"); o.RedisMaster == "" {
		return bad("redis-master", "empty")
	}
	o.RedisMinReplicas = c.Int("redis-min-replicas")
	if !c.IsSet("redis-min-replicas") && o.RedisSentinelService != "" {
		o.RedisMinReplicas = 1
	}
	if o.RedisMinReplicas < 0 || o.RedisMinReplicas > 4 {
		return bad("redis-min-replicas", "%d: want 0..4", o.RedisMinReplicas)
	}
	if o.RedisWaitTimeout = c.Duration("redis-wait-timeout"); o.RedisWaitTimeout < 10*time.Millisecond || o.RedisWaitTimeout > 5*time.Second {
		return bad("redis-wait-timeout", "%s: want 10ms..5s", o.RedisWaitTimeout)
	}
	o.RedisPassword = c.String("redis-password")
	if o.RedisDB = c.Int("redis-db"); o.RedisDB < 0 || o.RedisDB > 15 {
		return bad("redis-db", "%d: want 0..15", o.RedisDB)
	}
	if o.KeyPrefix = c.String("key-prefix"); o.KeyPrefix == "" {
		return bad("key-prefix", "empty")
	}
	if o.Retention = c.Int("retention"); o.Retention < 10 {
		return bad("retention", "%d: keep at least 10 windows", o.Retention)
	}
	if o.WriteToken = c.String("write-token"); len(o.WriteToken) < 8 {
		return bad("write-token", "missing or shorter than 8 characters: set a shared secret (the averager sends the same)")
	}
	if o.ShutdownDelay = c.Duration("shutdown-delay"); o.ShutdownDelay < 0 || o.ShutdownDelay > time.Minute {
		return bad("shutdown-delay", "%s: want 0..1m", o.ShutdownDelay)
	}
	o.RedisUser = c.String("redis-user")
	if o.RedisUser != "" && o.RedisPassword == "" {
		return bad("redis-password", "empty while --redis-user is set: an ACL user needs its password")
	}
	if o.TLS, o.TLSOn, err = cliflags.ReadTLS(c, Name); err != nil {
		return o, err
	}
	o.WriteAddr, o.Writers = c.String("write-addr"), c.StringSlice("writers")
	switch {
	case o.TLSOn && o.WriteAddr == "":
		return bad("write-addr", "empty while --tls-cert-file is set: with TLS, window writes are accepted only on this mutual-TLS listener")
	case !o.TLSOn && o.WriteAddr != "":
		return bad("write-addr", "set without --tls-cert-file and --tls-roots-file: the listener needs a certificate")
	case o.TLSOn && len(o.Writers) == 0:
		return bad("writers", "empty: no service could write windows")
	}
	if o.WriteAddr != "" {
		if err := cliflags.CheckHostPort(o.WriteAddr); err != nil {
			return bad("write-addr", "%v", err)
		}
	}
	return o, nil
}

// ParseArgs is what the binary makes of args and the environment, without
// running anything.
func ParseArgs(args []string) (Options, error) {
	return cliflags.Parse(Name, Flags(), ReadOptions, args)
}
