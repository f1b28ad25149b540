package averager

import (
	"fmt"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/nsqpub"
	"github.com/loopstock/loopstock/internal/nsqtls"
)

// Name is the binary's and the Consul service's name.
const Name = "integeraverage-cal"

// Options hold every setting of integeraverage-cal; NewOptions the defaults.
type Options struct {
	cliflags.Common
	Window              time.Duration
	Grace               time.Duration
	MaxLateness         time.Duration
	MaxFuture           time.Duration
	Min, Max            uint32
	Topic               string
	Channel             string
	DeadLetterTopic     string
	LookupdService      string
	NSQDService         string
	APIService          string
	WriteToken          string
	MaxInFlight         int
	MsgTimeout          time.Duration
	LookupdPollInterval time.Duration
	LeaderKey           string
	SessionTTL          time.Duration
	CoordinationPrefix  string
	NSQ                 nsqtls.Settings
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{
		Window: 5 * time.Second, Grace: 500 * time.Millisecond, MaxLateness: 10 * time.Minute, MaxFuture: time.Minute,
		Min: 1, Max: 10000, Topic: "integers", Channel: "averager", DeadLetterTopic: "integers-dead-letter",
		LookupdService: "nsqlookupd", NSQDService: "nsqd", APIService: "integer-api", MaxInFlight: 2500, MsgTimeout: 15 * time.Second,
		LookupdPollInterval: 5 * time.Second, LeaderKey: "loopstock/integeraverage-cal/leader", SessionTTL: 10 * time.Second,
		CoordinationPrefix: "loopstock/integer-gen",
	}
}

// Flags are integeraverage-cal's command-line flags.
func Flags() []cli.Flag {
	d := NewOptions()
	env := func(f string) []string { return cliflags.Env(Name, f) }
	return append(append(cliflags.CommonFlags(Name, "127.0.0.1:8083"), nsqtls.Flags(Name)...),
		&cli.DurationFlag{Name: "window", Value: d.Window, EnvVars: env("window"), Usage: "window length; windows are aligned to the Unix epoch"},
		&cli.DurationFlag{Name: "grace", Value: d.Grace, EnvVars: env("grace"),
			Usage: "longest wait after a window's end before writing it; a window is written sooner once every live generator has passed its end (integers later than that amend it)"},
		&cli.DurationFlag{Name: "max-lateness", Value: d.MaxLateness, EnvVars: env("max-lateness"), Usage: "integers later than this after their window's end are dead-lettered"},
		&cli.DurationFlag{Name: "max-future", Value: d.MaxFuture, EnvVars: env("max-future"), Usage: "integers stamped further ahead of this host's clock are dead-lettered"},
		&cli.Int64Flag{Name: "min", Value: int64(d.Min), EnvVars: env("min"), Usage: "smallest valid integer"},
		&cli.Int64Flag{Name: "max", Value: int64(d.Max), EnvVars: env("max"), Usage: "largest valid integer"},
		&cli.StringFlag{Name: "topic", Value: d.Topic, EnvVars: env("topic"), Usage: "NSQ topic to consume"},
		&cli.StringFlag{Name: "channel", Value: d.Channel, EnvVars: env("channel"), Usage: "NSQ channel"},
		&cli.StringFlag{Name: "dead-letter-topic", Value: d.DeadLetterTopic, EnvVars: env("dead-letter-topic"), Usage: "NSQ topic for rejected messages"},
		&cli.StringFlag{Name: "lookupd-service", Value: d.LookupdService, EnvVars: env("lookupd-service"), Usage: "Consul service name of nsqlookupd"},
		&cli.StringFlag{Name: "nsqd-service", Value: d.NSQDService, EnvVars: env("nsqd-service"), Usage: "Consul service name of nsqd (dead letters are published there)"},
		&cli.StringFlag{Name: "api-service", Value: d.APIService, EnvVars: env("api-service"), Usage: "Consul service name of integer-api"},
		&cli.StringFlag{Name: "write-token", EnvVars: env("write-token"), Usage: "shared token for integer-api's window writes (required)"},
		&cli.IntFlag{Name: "max-in-flight", Value: d.MaxInFlight, EnvVars: env("max-in-flight"), Usage: "NSQ messages held at once (they wait for their window to be stored)"},
		&cli.DurationFlag{Name: "msg-timeout", Value: d.MsgTimeout, EnvVars: env("msg-timeout"),
			Usage: "nsqd redelivers a message not touched or finished for this long: how soon a crashed averager's messages come back (held ones are touched)"},
		&cli.DurationFlag{Name: "lookupd-poll-interval", Value: d.LookupdPollInterval, EnvVars: env("lookupd-poll-interval"), Usage: "how often nsqlookupd is asked for nsqd producers"},
		&cli.StringFlag{Name: "leader-key", Value: d.LeaderKey, EnvVars: env("leader-key"), Usage: "Consul KV key of the active-averager lock"},
		&cli.StringFlag{Name: "coordination-prefix", Value: d.CoordinationPrefix, EnvVars: env("coordination-prefix"),
			Usage: "integer-gen's --coordination-prefix: the live generators are read there, and a window is written once they have all passed its end (empty: every window waits for --grace)"},
		&cli.DurationFlag{Name: "session-ttl", Value: d.SessionTTL, EnvVars: env("session-ttl"), Usage: "TTL of the leader lock's Consul session"},
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
	if o.Window = c.Duration("window"); o.Window < 10*time.Millisecond || o.Window%time.Millisecond != 0 {
		return bad("window", "%s: want a whole number of milliseconds, at least 10ms", o.Window)
	}
	if o.Grace = c.Duration("grace"); o.Grace < 0 || o.Grace > time.Hour {
		return bad("grace", "%s: want 0..1h", o.Grace)
	}
	if o.MaxLateness = c.Duration("max-lateness"); o.MaxLateness < o.Grace {
		return bad("max-lateness", "%s: want at least --grace (%s)", o.MaxLateness, o.Grace)
	}
	if o.MaxFuture = c.Duration("max-future"); o.MaxFuture < 0 {
		return bad("max-future", "%s: want 0 or more", o.MaxFuture)
	}
	if o.Min, o.Max, err = cliflags.ReadRange(c, Name); err != nil {
		return o, err
	}
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"topic", &o.Topic}, {"channel", &o.Channel}, {"dead-letter-topic", &o.DeadLetterTopic}} {
		if *f.dst = c.String(f.flag); !nsqpub.ValidName(*f.dst) {
			return bad(f.flag, "%q: 1-64 characters of [.a-zA-Z0-9_-]", *f.dst)
		}
	}
	if o.DeadLetterTopic == o.Topic {
		return bad("dead-letter-topic", "must differ from --topic")
	}
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"lookupd-service", &o.LookupdService}, {"nsqd-service", &o.NSQDService}, {"api-service", &o.APIService}, {"leader-key", &o.LeaderKey}} {
		if *f.dst = c.String(f.flag); *f.dst == "" {
			return bad(f.flag, "empty")
		}
	}
	if o.WriteToken = c.String("write-token"); len(o.WriteToken) < 8 {
		return bad("write-token", "missing or shorter than 8 characters: set the same token as integer-api's")
	}
	if o.MaxInFlight = c.Int("max-in-flight"); o.MaxInFlight < 1 || o.MaxInFlight > 100000 {
		return bad("max-in-flight", "%d: want 1..100000", o.MaxInFlight)
	}
	if o.MsgTimeout = c.Duration("msg-timeout"); o.MsgTimeout < 3*time.Second || o.MsgTimeout > 15*time.Minute {
		return bad("msg-timeout", "%s: want 3s..15m (nsqd's --max-msg-timeout)", o.MsgTimeout)
	}
	if o.LookupdPollInterval = c.Duration("lookupd-poll-interval"); o.LookupdPollInterval < 100*time.Millisecond {
		return bad("lookupd-poll-interval", "%s: want at least 100ms", o.LookupdPollInterval)
	}
	o.CoordinationPrefix = c.String("coordination-prefix")
	if o.SessionTTL = c.Duration("session-ttl"); o.SessionTTL < 10*time.Second || o.SessionTTL > 24*time.Hour {
		return bad("session-ttl", "%s: want 10s..24h (Consul's limits)", o.SessionTTL)
	}
	if _, err := o.nsqConfig(); err != nil {
		return o, err
	}
	if o.NSQ, err = nsqtls.ReadFlags(c, Name); err != nil {
		return o, err
	}
	return o, nil
}

// nsqConfig is the consumer's configuration. Each option goes through
// go-nsq's own checks, so a value the consumer would refuse at every term
// is refused here, naming its flag.
func (o Options) nsqConfig() (*nsq.Config, error) {
	cfg := nsq.NewConfig()
	for _, f := range []struct {
		flag, option string
		value        any
	}{
		{"max-in-flight", "max_in_flight", o.MaxInFlight},
		{"msg-timeout", "msg_timeout", o.MsgTimeout},
		{"lookupd-poll-interval", "lookupd_poll_interval", o.LookupdPollInterval},
	} {
		if err := cfg.Set(f.option, f.value); err != nil {
			return nil, cliflags.Invalid(Name, f.flag, "%v: %v", f.value, err)
		}
	}
	cfg.DefaultRequeueDelay = time.Second
	// Unbuffered delivery: nsqd otherwise holds messages in its write
	// buffer for up to 250 ms after taking them off its disk queue, and a
	// SIGKILL of nsqd then loses them for this channel.
	cfg.OutputBufferSize = -1
	cfg.OutputBufferTimeout = -1
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nsq consumer configuration: %w", err)
	}
	return cfg, nil
}

// ParseArgs is what the binary makes of args and the environment, without
// running anything.
func ParseArgs(args []string) (Options, error) {
	return cliflags.Parse(Name, Flags(), ReadOptions, args)
}
