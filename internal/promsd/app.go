package promsd

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	consul "github.com/hashicorp/consul/api"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/logging"
)

// Name is the binary's name.
const Name = "consul-file-sd"

// App is consul-file-sd's command line.
func App() *cli.App {
	env := func(f string, fallbacks ...string) []string { return cliflags.Env(Name, f, fallbacks...) }
	flags := []cli.Flag{
		&cli.StringFlag{Name: "consul-addr", Value: "127.0.0.1:8500", EnvVars: env("consul-addr", "CONSUL_HTTP_ADDR"), Usage: "Consul agent HTTP address"},
		&cli.StringSliceFlag{Name: "service", Value: cli.NewStringSlice("integer-gen", "integeraverage-cal", "integer-api"), EnvVars: env("service"),
			Usage: "Consul service to list (repeat the flag for each)"},
		&cli.StringFlag{Name: "out", EnvVars: env("out"), Usage: "the file_sd file to write (required)"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("log-level"), Usage: "trace, debug, info, warn or error"},
	}
	return cliflags.NewApp(Name, "writes the instances of Consul services as a Prometheus file_sd file, for a Prometheus without consul_sd_configs", flags,
		func(c *cli.Context) error {
			if err := cliflags.CheckHostPort(c.String("consul-addr")); err != nil {
				return cliflags.Invalid(Name, "consul-addr", "%v", err)
			}
			if c.String("out") == "" {
				return cliflags.Invalid(Name, "out", "missing: the file Prometheus's file_sd_configs reads")
			}
			if len(c.StringSlice("service")) == 0 {
				return cliflags.Invalid(Name, "service", "none: name at least one Consul service")
			}
			log, err := logging.New(os.Stderr, Name, "", c.String("log-level"), "text")
			if err != nil {
				return cliflags.Invalid(Name, "log-level", "%v", err)
			}
			cfg := consul.DefaultConfig()
			cfg.Address = c.String("consul-addr")
			client, err := consul.NewClient(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, client, c.StringSlice("service"), c.String("out"), log)
		})
}
