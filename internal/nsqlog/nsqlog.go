// Package nsqlog routes go-nsq's log lines into logrus at their level.
package nsqlog

import (
	"strings"

	"github.com/sirupsen/logrus"
)

// Logger implements go-nsq's logger interface.
type Logger struct{ log *logrus.Entry }

// New returns a go-nsq logger writing to log.
func New(log *logrus.Entry) Logger { return Logger{log: log.WithField("component", "go-nsq")} }

// Output takes go-nsq's lines, which start with their level ("INF", "WRN", "ERR").
func (l Logger) Output(_ int, s string) error {
	msg := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(msg, "ERR"):
		l.log.Error(strings.TrimSpace(msg[3:]))
	case strings.HasPrefix(msg, "WRN"):
		l.log.Warn(strings.TrimSpace(msg[3:]))
	case strings.HasPrefix(msg, "INF"):
		l.log.Info(strings.TrimSpace(msg[3:]))
	default:
		l.log.Debug(msg)
	}
	return nil
}
