// Command nomad-run deploys the job files in nomad/ (make nomad-run) and
// stops them (make nomad-stop): on dev agents it starts on 127.0.0.1, or on
// the cluster NOMAD_ADDR names. The work is in platform/deploy.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/platform/deploy"
)

func main() {
	app := &cli.App{
		Name:  "nomad-run",
		Usage: "deploy loopstock's Nomad jobs and wait until they are healthy (NOMAD_ADDR unset: on dev agents on 127.0.0.1)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Value: ".", Usage: "the checkout (nomad/ and .bin/ are in it)"},
			&cli.StringFlag{Name: "timeout", Value: "300s", EnvVars: []string{"NOMAD_RUN_TIMEOUT"},
				Usage: "how long to wait for every job to be healthy (a duration, or seconds)"},
		},
		Action: func(c *cli.Context) error { return act(c, deploy.Run) },
		Commands: []*cli.Command{{
			Name:   "stop",
			Usage:  "stop every job, and the dev agents nomad-run started, leaving no process behind",
			Action: func(c *cli.Context) error { return act(c, deploy.Stop) },
		}},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func act(c *cli.Context, f func(context.Context, deploy.Options) error) error {
	repo, err := filepath.Abs(c.String("repo"))
	if err != nil {
		return err
	}
	timeout, err := time.ParseDuration(c.String("timeout"))
	if s, errInt := strconv.Atoi(c.String("timeout")); errInt == nil {
		timeout, err = time.Duration(s)*time.Second, nil
	}
	if err != nil || timeout <= 0 {
		return cli.Exit(fmt.Sprintf("--timeout (NOMAD_RUN_TIMEOUT) %q: want a positive duration such as 300s, or seconds", c.String("timeout")), 2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return f(ctx, deploy.Options{Repo: repo, Data: filepath.Join(repo, ".data"), Timeout: timeout, Env: os.Environ(), Out: os.Stdout})
}
