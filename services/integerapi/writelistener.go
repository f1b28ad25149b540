package integerapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// writeListener is the mutual-TLS listener that alone accepts window
// writes: its TLS refuses any client but the writers' certificates, and
// the handler checks the identity again. Reads are served there too. A nil
// writeListener (no TLS) does nothing.
type writeListener struct {
	ln       net.Listener
	server   *http.Server
	log      *logrus.Entry
	refusals io.Closer // the pipe of the server's error log
}

func listenWrites(addr string, h http.Handler, cfg *tls.Config, log *logrus.Entry) (*writeListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--write-addr): %w", addr, err)
	}
	// A refused handshake is a warning in the log, with its reason.
	refusals := log.WithField("listener", "writes").WriterLevel(logrus.WarnLevel)
	return &writeListener{ln: tls.NewListener(ln, cfg), log: log, refusals: refusals,
		server: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: stdlog.New(refusals, "", 0)}}, nil
}

func (w *writeListener) port() string {
	_, p, _ := net.SplitHostPort(w.ln.Addr().String())
	return p
}

// serve serves until shutdown.
func (w *writeListener) serve() {
	if w == nil {
		return
	}
	w.log.WithField("write_addr", w.ln.Addr().String()).Info("window writes accepted only here, with mutual TLS")
	go func() {
		if err := w.server.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.WithError(err).Error("write listener failed")
		}
	}()
}

// shutdown lets writes in progress finish.
func (w *writeListener) shutdown(ctx context.Context) error {
	if w == nil {
		return nil
	}
	err := w.server.Shutdown(ctx)
	w.ln.Close() // not served yet: Shutdown does not know it
	w.refusals.Close()
	return err
}
