package nsqdgate

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/svc"
	"github.com/loopstock/loopstock/internal/tlsid"
)

// Name is the binary's name.
const Name = "nsqd-gate"

// Options hold every setting of nsqd-gate.
type Options struct {
	HTTPSAddr, AuthAddr, NSQDHTTPAddr string
	GrantsFile                        string
	AuthTTL                           time.Duration
	TLS                               tlsid.Files
	LogLevel, LogFormat               string
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{AuthAddr: "127.0.0.1:4181", NSQDHTTPAddr: "127.0.0.1:4151", AuthTTL: time.Minute, LogLevel: "info", LogFormat: "text"}
}

// Flags are nsqd-gate's command-line flags.
func Flags() []cli.Flag {
	d := NewOptions()
	env := func(f string) []string { return cliflags.Env(Name, f) }
	return append([]cli.Flag{
		&cli.StringFlag{Name: "https-addr", EnvVars: env("https-addr"), Usage: "listen address of the HTTPS gate to nsqd's HTTP API, for the network (required)"},
		&cli.StringFlag{Name: "auth-addr", Value: d.AuthAddr, EnvVars: env("auth-addr"), Usage: "listen address of the auth server nsqd asks (its --auth-http-address); keep it on loopback"},
		&cli.StringFlag{Name: "nsqd-http-addr", Value: d.NSQDHTTPAddr, EnvVars: env("nsqd-http-addr"),
			Usage: "nsqd's own HTTP address: host:port on loopback, or the absolute path of its unix socket"},
		&cli.StringFlag{Name: "grants-file", EnvVars: env("grants-file"), Usage: "JSON file, mode 0600: which service (and secret) may publish, subscribe, read stats (required)"},
		&cli.DurationFlag{Name: "auth-ttl", Value: d.AuthTTL, EnvVars: env("auth-ttl"), Usage: "how long nsqd keeps an authorization: a revoked secret stops working within it"},
		&cli.StringFlag{Name: "log-level", Value: d.LogLevel, EnvVars: env("log-level"), Usage: "trace, debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: d.LogFormat, EnvVars: env("log-format"), Usage: "text or json"},
	}, cliflags.TLSFlags(Name)...)
}

// ReadOptions reads and validates the flags; every error names its flag.
func ReadOptions(c *cli.Context) (Options, error) {
	o := Options{HTTPSAddr: c.String("https-addr"), AuthAddr: c.String("auth-addr"), NSQDHTTPAddr: c.String("nsqd-http-addr"),
		GrantsFile: c.String("grants-file"), AuthTTL: c.Duration("auth-ttl"), LogLevel: c.String("log-level"), LogFormat: c.String("log-format")}
	socket := strings.HasPrefix(o.NSQDHTTPAddr, "/")
	for _, f := range []struct{ flag, v string }{{"https-addr", o.HTTPSAddr}, {"auth-addr", o.AuthAddr}, {"nsqd-http-addr", o.NSQDHTTPAddr}} {
		if f.flag == "nsqd-http-addr" && socket {
			continue
		}
		if err := cliflags.CheckHostPort(f.v); err != nil {
			return o, cliflags.Invalid(Name, f.flag, "%v", err)
		}
	}
	for _, f := range []struct{ flag, v string }{{"auth-addr", o.AuthAddr}, {"nsqd-http-addr", o.NSQDHTTPAddr}} {
		if f.flag == "nsqd-http-addr" && socket {
			continue
		}
		if h, _, _ := net.SplitHostPort(f.v); !net.ParseIP(h).IsLoopback() {
			return o, cliflags.Invalid(Name, f.flag, "%q is not on loopback: only this host's nsqd may reach it", f.v)
		}
	}
	if o.GrantsFile == "" {
		return o, cliflags.Invalid(Name, "grants-file", "empty: name the JSON file of who may do what")
	}
	if o.AuthTTL < time.Second || o.AuthTTL > time.Hour {
		return o, cliflags.Invalid(Name, "auth-ttl", "%s: want 1s..1h", o.AuthTTL)
	}
	var ok bool
	var err error
	if o.TLS, ok, err = cliflags.ReadTLS(c, Name); err != nil {
		return o, err
	} else if !ok {
		return o, cliflags.Invalid(Name, "tls-cert-file", "empty: the gate exists to check certificates; set --tls-cert-file and --tls-roots-file")
	}
	if _, err := logging.ParseLevel(o.LogLevel); err != nil {
		return o, cliflags.Invalid(Name, "log-level", "%v", err)
	}
	if err := logging.CheckFormat(o.LogFormat); err != nil {
		return o, cliflags.Invalid(Name, "log-format", "%v", err)
	}
	return o, nil
}

// ParseArgs is what the binary makes of args and the environment, without
// running anything.
func ParseArgs(args []string) (Options, error) {
	return cliflags.Parse(Name, Flags(), ReadOptions, args)
}

// App is nsqd-gate's command line.
func App() *cli.App {
	return cliflags.NewApp(Name, "decides who may publish, subscribe and call the HTTP API of the nsqd beside it", Flags(), func(c *cli.Context) error {
		o, err := ReadOptions(c)
		if err != nil {
			return err
		}
		return svc.Main(Name, "", cliflags.Common{LogLevel: o.LogLevel, LogFormat: o.LogFormat}, func(ctx context.Context, log *logrus.Entry) error {
			return Run(ctx, o, nil, log)
		})
	})
}

// Run serves both listeners until ctx ends; ready, when not nil, gets the
// two listeners' addresses once they listen.
func Run(ctx context.Context, o Options, ready func(httpsAddr, authAddr string), log *logrus.Entry) error {
	certs, err := cliflags.LoadTLS(Name, o.TLS)
	if err != nil {
		return err
	}
	gf, err := loadGrantsFile(o.GrantsFile)
	if err != nil {
		return cliflags.Invalid(Name, "grants-file", "%v", err)
	}
	// The services accepted are those of the grants of the moment: a grant
	// added to the file needs no restart.
	granted := func() []string {
		g, _ := gf.current()
		var services []string
		for _, gr := range g.Grants {
			services = append(services, gr.Service)
		}
		return services
	}
	authLn, err := net.Listen("tcp", o.AuthAddr)
	if err != nil {
		return fmt.Errorf("listening on %s (--auth-addr): %w", o.AuthAddr, err)
	}
	gateLn, err := net.Listen("tcp", o.HTTPSAddr)
	if err != nil {
		authLn.Close()
		return fmt.Errorf("listening on %s (--https-addr): %w", o.HTTPSAddr, err)
	}
	auth := &http.Server{Handler: AuthHandler(gf.current, o.AuthTTL, log), ReadHeaderTimeout: 5 * time.Second}
	// A refused handshake is a line in the service's log, with its reason.
	refusals := log.WithField("listener", "https").WriterLevel(logrus.WarnLevel)
	defer refusals.Close()
	gate := &http.Server{Handler: HTTPGate(o.NSQDHTTPAddr, gf.current, log), ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: certs.ServerConfigOptionalFunc(granted), ErrorLog: stdlog.New(refusals, "", 0)}
	errs := make(chan error, 2)
	go func() { errs <- auth.Serve(authLn) }()
	go func() { errs <- gate.ServeTLS(gateLn, "", "") }()
	log.WithFields(logrus.Fields{"https": gateLn.Addr().String(), "auth": authLn.Addr().String(), "identity": certs.Identity().String(),
		"services": granted()}).Info("nsqd-gate serving")
	if ready != nil {
		ready(gateLn.Addr().String(), authLn.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	runErr = errors.Join(runErr, gate.Shutdown(sctx), auth.Shutdown(sctx))
	if errors.Is(runErr, http.ErrServerClosed) {
		return nil
	}
	return runErr
}
