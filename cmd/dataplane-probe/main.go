// Command dataplane-probe tries what a stranger on the cluster network
// would try against the data plane (internal/intruder), prints one JSON
// line per attempt, and exits 1 when any attempt was not refused. Run it
// from a host of the cluster network; with --tls-cert-file it holds that
// certificate (a taken-over host of another service).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/intruder"
)

func main() {
	flag := func(name, usage string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, EnvVars: cliflags.Env("dataplane-probe", name), Usage: usage}
	}
	app := cliflags.NewApp("dataplane-probe", "tries what a stranger would against nsqd, Redis and integer-api; exits 1 if anything let it in", []cli.Flag{
		flag("nsqd-tcp", "nsqd's TCP address"), flag("nsqd-http", "nsqd's own HTTP address"), flag("nsqd-gate", "nsqd-gate's HTTPS address"),
		flag("redis", "a Redis address"), flag("api-http", "integer-api's HTTP address"), flag("api-writes", "integer-api's write listener"),
		flag("nsqlookupd-tcp", "nsqlookupd's TCP address: register an impostor nsqd there and wait for a subscriber"),
		&cli.DurationFlag{Name: "impostor-wait", Value: 20 * time.Second, EnvVars: cliflags.Env("dataplane-probe", "impostor-wait"),
			Usage: "how long the impostor nsqd waits for a subscriber (a few of the averager's --lookupd-poll-interval)"},
		flag("tls-cert-file", "a PEM file with a certificate and its key to present (optional)"),
	}, func(c *cli.Context) error {
		if c.Duration("impostor-wait") <= 0 {
			return cliflags.Invalid("dataplane-probe", "impostor-wait", "%s: want a positive duration, e.g. 20s", c.Duration("impostor-wait"))
		}
		var cert *tls.Certificate
		if f := c.String("tls-cert-file"); f != "" {
			kp, err := tls.LoadX509KeyPair(f, f)
			if err != nil {
				return cliflags.Invalid("dataplane-probe", "tls-cert-file", "%v", err)
			}
			cert = &kp
		}
		attempts := intruder.Run(context.Background(), intruder.Targets{NSQDTCP: c.String("nsqd-tcp"), NSQDHTTP: c.String("nsqd-http"),
			NSQDGate: c.String("nsqd-gate"), Redis: c.String("redis"), APIHTTP: c.String("api-http"), APIWrites: c.String("api-writes"),
			NSQLookupdTCP: c.String("nsqlookupd-tcp"), ImpostorWait: c.Duration("impostor-wait")}, cert)
		enc := json.NewEncoder(os.Stdout)
		let := 0
		for _, a := range attempts {
			enc.Encode(a)
			if !a.Refused {
				let++
			}
		}
		if let > 0 {
			return fmt.Errorf("%d of %d attempts were let in", let, len(attempts))
		}
		return nil
	})
	os.Exit(cliflags.Run(app, os.Args))
}
