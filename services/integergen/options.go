package integergen

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/nsqpub"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/wire"
)

// Name is the binary's and the Consul service's name.
const Name = "integer-gen"

// Coordination-loss policies (--on-coordination-loss).
const (
	OnLossPause = "pause" // emit nothing until the lease is back (keeps the guarantee)
	OnLossMark  = "mark"  // emit anyway, flagged as uncoordinated
)

// Options hold every setting of integer-gen; NewOptions holds the defaults.
type Options struct {
	cliflags.Common
	Interval           time.Duration
	Min, Max           uint32
	Topic              string
	Channel            string
	NSQDService        string
	NSQDCopies         int
	MaxGenerators      int
	PerSlot            int
	CoordinationPrefix string
	OnCoordinationLoss string
	LeaseAhead         time.Duration
	BatchMax           int
	BatchWait          time.Duration
	QueueSize          int
	MaxPublishAge      time.Duration
	PublishTimeout     time.Duration
	Instance           wire.InstanceID
	NSQ                nsqtls.Settings
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{
		Interval: 100 * time.Millisecond, Min: 1, Max: 10000, Topic: "integers", Channel: "averager", NSQDService: "nsqd", NSQDCopies: 1,
		MaxGenerators: 64, PerSlot: 1, CoordinationPrefix: "loopstock/integer-gen", OnCoordinationLoss: OnLossPause,
		LeaseAhead: 2 * time.Second, BatchMax: 256, QueueSize: 4096, MaxPublishAge: 30 * time.Second,
		PublishTimeout: 5 * time.Second,
	}
}

// Flags are integer-gen's command-line flags.
func Flags() []cli.Flag {
	d := NewOptions()
	env := func(f string) []string { return cliflags.Env(Name, f) }
	return append(append(cliflags.CommonFlags(Name, "127.0.0.1:8081"), nsqtls.Flags(Name)...),
		&cli.DurationFlag{Name: "interval", Value: d.Interval, EnvVars: env("interval"), Usage: "slot length: one integer per slot, slots aligned to the Unix epoch"},
		&cli.Int64Flag{Name: "min", Value: int64(d.Min), EnvVars: env("min"), Usage: "smallest integer drawn (inclusive)"},
		&cli.Int64Flag{Name: "max", Value: int64(d.Max), EnvVars: env("max"), Usage: "largest integer drawn (inclusive)"},
		&cli.StringFlag{Name: "topic", Value: d.Topic, EnvVars: env("topic"), Usage: "NSQ topic to publish to"},
		&cli.StringFlag{Name: "channel", Value: d.Channel, EnvVars: env("channel"),
			Usage: "the averager's NSQ channel, created with the topic so that it gets every integer even when another channel existed first (empty: none)"},
		&cli.StringFlag{Name: "nsqd-service", Value: d.NSQDService, EnvVars: env("nsqd-service"), Usage: "Consul service name of nsqd (the one on this node is preferred)"},
		&cli.IntFlag{Name: "nsqd-copies", Value: d.NSQDCopies, EnvVars: env("nsqd-copies"),
			Usage: "publish each message to this many nsqd (this node's first): with 2, a host lost with the active averager and its nsqd loses no integer; the averager drops the copies"},
		&cli.IntFlag{Name: "max-generators", Value: d.MaxGenerators, EnvVars: env("max-generators"), Usage: "most generators of one group running at once"},
		&cli.IntFlag{Name: "per-slot", Value: d.PerSlot, EnvVars: env("per-slot"),
			Usage: "integers per slot (load mode: with --interval 1ms and --per-slot 100, 100000 integers/s; all distinct within a slot across generators)"},
		&cli.StringFlag{Name: "coordination-prefix", Value: d.CoordinationPrefix, EnvVars: env("coordination-prefix"), Usage: "Consul KV folder of the group that must never collide"},
		&cli.StringFlag{Name: "on-coordination-loss", Value: d.OnCoordinationLoss, EnvVars: env("on-coordination-loss"),
			Usage: "while Consul is unreachable: pause (emit nothing; keeps the no-collision guarantee) or mark (emit, flagged uncoordinated)"},
		&cli.DurationFlag{Name: "lease-ahead", Value: d.LeaseAhead, EnvVars: env("lease-ahead"), Usage: "how far ahead a coordination lease reaches (a Consul round trip every quarter of it)"},
		&cli.IntFlag{Name: "batch-max", Value: d.BatchMax, EnvVars: env("batch-max"), Usage: "most integers in one NSQ message (batches form only when publishing falls behind)"},
		&cli.DurationFlag{Name: "batch-wait", Value: d.BatchWait, EnvVars: env("batch-wait"), Usage: "wait this long for more integers before publishing a batch (0: publish at once)"},
		&cli.IntFlag{Name: "queue-size", Value: d.QueueSize, EnvVars: env("queue-size"), Usage: "integers held while nsqd is unreachable"},
		&cli.DurationFlag{Name: "max-publish-age", Value: d.MaxPublishAge, EnvVars: env("max-publish-age"), Usage: "an integer not acknowledged by nsqd within this is given up (counted and logged)"},
		&cli.DurationFlag{Name: "publish-timeout", Value: d.PublishTimeout, EnvVars: env("publish-timeout"), Usage: "time allowed for one publish to be acknowledged"},
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
	o.Interval = c.Duration("interval")
	if o.Interval < time.Millisecond || o.Interval%time.Millisecond != 0 {
		return bad("interval", "%s: want a whole number of milliseconds, at least 1ms", o.Interval)
	}
	if o.Min, o.Max, err = cliflags.ReadRange(c, Name); err != nil {
		return o, err
	}
	mn, mx := int64(o.Min), int64(o.Max)
	if o.Topic = c.String("topic"); !nsqpub.ValidName(o.Topic) {
		return bad("topic", "%q: 1-64 characters of [.a-zA-Z0-9_-]", o.Topic)
	}
	if o.Channel = c.String("channel"); o.Channel != "" && !nsqpub.ValidName(o.Channel) {
		return bad("channel", "%q: 1-64 characters of [.a-zA-Z0-9_-], or empty", o.Channel)
	}
	if o.NSQDService = c.String("nsqd-service"); o.NSQDService == "" {
		return bad("nsqd-service", "empty")
	}
	o.MaxGenerators = c.Int("max-generators")
	if o.MaxGenerators < 1 || o.MaxGenerators > 1024 {
		return bad("max-generators", "%d: want 1..1024", o.MaxGenerators)
	}
	if o.PerSlot = c.Int("per-slot"); o.PerSlot < 1 || o.PerSlot > wire.MaxItems {
		return bad("per-slot", "%d: want 1..%d", o.PerSlot, wire.MaxItems)
	}
	if int64(o.MaxGenerators)*int64(o.PerSlot) > mx-mn+1 {
		return bad("max-generators", "%d generators × %d per slot cannot draw distinct values from %d..%d", o.MaxGenerators, o.PerSlot, mn, mx)
	}
	if o.CoordinationPrefix = c.String("coordination-prefix"); o.CoordinationPrefix == "" {
		return bad("coordination-prefix", "empty")
	}
	switch o.OnCoordinationLoss = c.String("on-coordination-loss"); o.OnCoordinationLoss {
	case OnLossPause, OnLossMark:
	default:
		return bad("on-coordination-loss", "%q: want pause or mark", o.OnCoordinationLoss)
	}
	if o.LeaseAhead = c.Duration("lease-ahead"); o.LeaseAhead < 4*o.Interval || o.LeaseAhead < 100*time.Millisecond {
		return bad("lease-ahead", "%s: want at least 100ms and 4 × --interval (%s)", o.LeaseAhead, 4*o.Interval)
	}
	if o.BatchMax = c.Int("batch-max"); o.BatchMax < 1 || o.BatchMax > wire.MaxItems {
		return bad("batch-max", "%d: want 1..%d", o.BatchMax, wire.MaxItems)
	}
	if o.BatchWait = c.Duration("batch-wait"); o.BatchWait < 0 || o.BatchWait > time.Minute {
		return bad("batch-wait", "%s: want 0..1m", o.BatchWait)
	}
	if o.QueueSize = c.Int("queue-size"); o.QueueSize < 1 {
		return bad("queue-size", "%d: want at least 1", o.QueueSize)
	}
	if o.MaxPublishAge = c.Duration("max-publish-age"); o.MaxPublishAge <= 0 {
		return bad("max-publish-age", "%s: want more than 0", o.MaxPublishAge)
	}
	if o.PublishTimeout = c.Duration("publish-timeout"); o.PublishTimeout <= 0 {
		return bad("publish-timeout", "%s: want more than 0", o.PublishTimeout)
	}
	if o.NSQDCopies = c.Int("nsqd-copies"); o.NSQDCopies < 1 || o.NSQDCopies > 3 {
		return bad("nsqd-copies", "%d: want 1 to 3", o.NSQDCopies)
	}
	if o.NSQ, err = nsqtls.ReadFlags(c, Name); err != nil {
		return o, err
	}
	return o, nil
}

// ParseArgs is what the binary makes of args and the environment, without
// running anything.
func ParseArgs(args []string) (Options, error) {
	return cliflags.Parse(Name, Flags(), ReadOptions, args)
}
