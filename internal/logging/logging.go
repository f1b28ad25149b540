// Package logging builds the logrus logger every binary uses, so the log
// level, the format and the service/instance fields are the same everywhere.
package logging

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// Formats are the accepted --log-format values.
var Formats = []string{"text", "json"}

// New returns a logger for service writing to w, with the service and
// instance fields on every line. level and format were validated by
// ParseLevel and CheckFormat.
func New(w io.Writer, service, instance, level, format string) (*logrus.Entry, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(lvl)
	if format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	}
	return l.WithFields(logrus.Fields{"service": service, "instance": instance}), nil
}

// ParseLevel accepts logrus level names (debug, info, warn, error, …).
func ParseLevel(s string) (logrus.Level, error) {
	lvl, err := logrus.ParseLevel(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a log level: use one of trace, debug, info, warn, error", s)
	}
	return lvl, nil
}

// CheckFormat accepts "text" or "json".
func CheckFormat(s string) error {
	for _, f := range Formats {
		if s == f {
			return nil
		}
	}
	return fmt.Errorf("%q is not a log format: use text or json", s)
}

// Discard is a logger that writes nothing, for tests.
func Discard() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
