// Package cliflags holds what every binary's command line shares: the
// common flags, their environment variables (the same binary is configured
// by flags on a laptop and by the environment in a Nomad job), validation
// that names the flag, and exit codes.
package cliflags

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/tlsid"
	"github.com/loopstock/loopstock/internal/version"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitRuntime = 1 // the service failed while running
	ExitUsage   = 2 // a flag or environment variable is invalid
)

// EnvVar is the environment variable of a binary's flag:
// integer-gen --interval → INTEGER_GEN_INTERVAL.
func EnvVar(binary, flag string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_").Replace(binary + "_" + flag))
}

// Env is EnvVar as the EnvVars of a cli flag, with extra fallbacks.
func Env(binary, flag string, fallbacks ...string) []string {
	return append([]string{EnvVar(binary, flag)}, fallbacks...)
}

// Common are the settings every service has.
type Common struct {
	ConsulAddr    string
	HTTPAddr      string
	AdvertiseAddr string
	ServiceID     string
	LogLevel      string
	LogFormat     string
}

// CommonFlags returns the shared flags of binary; httpAddr is its default
// listen address for /health and /metrics.
func CommonFlags(binary, httpAddr string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "consul-addr", Value: "127.0.0.1:8500", EnvVars: Env(binary, "consul-addr", "CONSUL_HTTP_ADDR"),
			Usage: "address of the local Consul agent's HTTP API"},
		&cli.StringFlag{Name: "http-addr", Value: httpAddr, EnvVars: Env(binary, "http-addr"),
			Usage: "listen address of the HTTP server (health, metrics)"},
		&cli.StringFlag{Name: "advertise-addr", EnvVars: Env(binary, "advertise-addr"),
			Usage: "address registered in Consul (default: the --http-addr host, or the Consul node's address when that is empty)"},
		&cli.StringFlag{Name: "service-id", EnvVars: Env(binary, "service-id"),
			Usage: "Consul service ID (default: the service name, the host name and the port)"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: Env(binary, "log-level"), Usage: "trace, debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: Env(binary, "log-format"), Usage: "text or json"},
	}
}

// UsageError is an invalid flag value; it names the flag and its variable.
type UsageError struct {
	Flag, EnvVar, Problem string
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("invalid --%s (or %s): %s", e.Flag, e.EnvVar, e.Problem)
}

// Invalid returns a UsageError for binary's flag.
func Invalid(binary, flag, format string, args ...any) error {
	return &UsageError{Flag: flag, EnvVar: EnvVar(binary, flag), Problem: fmt.Sprintf(format, args...)}
}

// ReadCommon reads and validates the common flags.
func ReadCommon(c *cli.Context, binary string) (Common, error) {
	cm := Common{
		ConsulAddr: c.String("consul-addr"), HTTPAddr: c.String("http-addr"), AdvertiseAddr: c.String("advertise-addr"),
		ServiceID: c.String("service-id"), LogLevel: c.String("log-level"), LogFormat: c.String("log-format"),
	}
	if _, err := logging.ParseLevel(cm.LogLevel); err != nil {
		return cm, Invalid(binary, "log-level", "%v", err)
	}
	if err := logging.CheckFormat(cm.LogFormat); err != nil {
		return cm, Invalid(binary, "log-format", "%v", err)
	}
	if err := CheckHostPort(cm.HTTPAddr); err != nil {
		return cm, Invalid(binary, "http-addr", "%v", err)
	}
	if err := CheckHostPort(cm.ConsulAddr); err != nil {
		return cm, Invalid(binary, "consul-addr", "%v", err)
	}
	if cm.AdvertiseAddr != "" && net.ParseIP(cm.AdvertiseAddr) == nil {
		return cm, Invalid(binary, "advertise-addr", "%q is not an IP address", cm.AdvertiseAddr)
	}
	return cm, nil
}

// CheckHostPort accepts host:port with a port in 0..65535.
func CheckHostPort(s string) error {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(s, "http://"), "https://"))
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has no valid port", s)
	}
	return nil
}

// NewApp builds a binary's command line: flags, --version, and an action
// whose *UsageError exits with ExitUsage.
func NewApp(binary, usage string, flags []cli.Flag, action cli.ActionFunc) *cli.App {
	return &cli.App{
		Name:    binary,
		Usage:   usage,
		Version: version.Version,
		Flags:   flags,
		// Positional arguments are a mistake (a flag without its dashes).
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return &UsageError{Flag: "?", Problem: fmt.Sprintf("unexpected argument %q: every setting is a --flag", c.Args().First())}
			}
			return action(c)
		},
		HideHelpCommand: true,
	}
}

// Run runs app with args and returns the process exit code, printing errors.
func Run(app *cli.App, args []string) int {
	app.ExitErrHandler = func(*cli.Context, error) {} // we choose the code below
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
	var ue *UsageError
	if errors.As(err, &ue) || isParseError(err) {
		return ExitUsage
	}
	return ExitRuntime
}

// isParseError recognises urfave/cli's own flag errors, which name the flag.
func isParseError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "flag provided but not defined") || strings.Contains(s, "invalid value") ||
		strings.Contains(s, "could not parse") || strings.Contains(s, "Required flag")
}

// Parse applies flags to args (and the environment) and reads the result
// with read, starting nothing: exactly what the binary would accept. The
// job-file checks use it to validate a task's arguments and environment.
func Parse[T any](binary string, flags []cli.Flag, read func(*cli.Context) (T, error), args []string) (T, error) {
	var out T
	app := NewApp(binary, "", flags, func(c *cli.Context) error {
		var err error
		out, err = read(c)
		return err
	})
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{binary}, args...))
	return out, err
}

// ReadRange reads and checks --min and --max (inclusive, 0..2^31).
func ReadRange(c *cli.Context, binary string) (uint32, uint32, error) {
	mn, mx := c.Int64("min"), c.Int64("max")
	if mn < 0 || mn > 1<<31 {
		return 0, 0, Invalid(binary, "min", "%d: want 0..%d", mn, int64(1)<<31)
	}
	if mx < mn || mx > 1<<31 {
		return 0, 0, Invalid(binary, "max", "%d: want --min (%d) .. %d", mx, mn, int64(1)<<31)
	}
	return uint32(mn), uint32(mx), nil
}

// TLSFlags are the flags of a service's certificate files (rendered by
// Nomad from Consul's Connect CA). Both unset: plaintext, as on a laptop.
func TLSFlags(binary string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert-file", EnvVars: Env(binary, "tls-cert-file"),
			Usage: "PEM file with this service's certificate and its private key, mode 0600 (Consul's caLeaf); set with --tls-roots-file to require mutual TLS"},
		&cli.StringFlag{Name: "tls-roots-file", EnvVars: Env(binary, "tls-roots-file"),
			Usage: "PEM file with the CA's root certificates (Consul's caRoots)"},
	}
}

// ReadTLS reads the TLS flags: ok is false when both are unset. The files
// are read when the service starts (a job check has no files).
func ReadTLS(c *cli.Context, binary string) (files tlsid.Files, ok bool, err error) {
	files = tlsid.Files{Cert: c.String("tls-cert-file"), Roots: c.String("tls-roots-file")}
	switch {
	case files.Cert == "" && files.Roots == "":
		return files, false, nil
	case files.Cert == "":
		return files, false, Invalid(binary, "tls-cert-file", "empty while --tls-roots-file is set: set both or neither")
	case files.Roots == "":
		return files, false, Invalid(binary, "tls-roots-file", "empty while --tls-cert-file is set: set both or neither")
	}
	return files, true, nil
}

// LoadTLS reads the certificate files ReadTLS named; its error names the
// flags.
func LoadTLS(binary string, files tlsid.Files) (*tlsid.Source, error) {
	s, err := tlsid.Load(files)
	if err != nil {
		return nil, Invalid(binary, "tls-cert-file", "%v (with --tls-roots-file %s)", err, files.Roots)
	}
	return s, nil
}
