package svc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/cliflags"
)

// Service is what a service plugs into the lifecycle (see the package
// comment for the order).
type Service struct {
	// Handler serves HTTP; nil serves the runtime's /health and /metrics.
	Handler http.Handler
	// Health is what /health reports; nil is always healthy.
	Health HealthFunc
	// Work does the service's work until its ctx ends; nil means serving
	// HTTP is all. A return before ctx ends stops the service, and its
	// error is Run's.
	Work func(ctx context.Context) error
	// WorkTimeout bounds how long Work takes to return once its ctx ends
	// (default 10 s).
	WorkTimeout time.Duration
	// Drain, when above zero, makes the stop leave Consul first and keep
	// serving this long.
	Drain time.Duration
	// Stop runs after Work returned, while the HTTP server still serves.
	Stop []Stage
	// HTTPTimeout bounds the wait for requests in progress (default 5 s).
	HTTPTimeout time.Duration
	// Close runs after the HTTP server stopped.
	Close []Stage
}

// Stage is one step of a stop.
type Stage struct {
	Name string
	// Timeout bounds Do (default 5 s); Do's ctx ends then, and the stop
	// goes on without waiting for it.
	Timeout time.Duration
	Do      func(ctx context.Context) error
}

// Defaults of the stop's deadlines.
const (
	DefaultWorkTimeout  = 10 * time.Second
	DefaultStageTimeout = 5 * time.Second
	DefaultHTTPTimeout  = 5 * time.Second
)

// Run runs a service's whole lifecycle until ctx ends or the service
// fails: start, setup, serve, then the stop in stages.
func Run(ctx context.Context, name string, cm cliflags.Common, log *logrus.Entry,
	setup func(ctx context.Context, rt *Runtime) (Service, error)) error {
	rt, err := Start(name, cm, log)
	if err != nil {
		return err
	}
	// Setup's context outlives the stop: what it starts (watches) is used
	// until the last stage.
	lifeCtx, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	s, err := setup(lifeCtx, rt)
	if err != nil {
		rt.listener.Close()
		return err
	}
	if s.Health != nil {
		rt.SetHealth(s.Health)
	}
	rt.Serve(s.Handler)

	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	workDone := make(chan error, 1)
	if s.Work != nil {
		go func() { workDone <- s.Work(workCtx) }()
	}

	var runErr error
	workEnded := false
	select {
	case <-ctx.Done():
	case err := <-workDone:
		workEnded = true
		if err != nil {
			runErr = err
			log.WithError(err).Error("failed")
		}
	case err := <-rt.Failed():
		runErr = fmt.Errorf("http server: %w", err)
		log.WithError(runErr).Error("failed")
	}
	log.Info("stopping")
	errs := []error{runErr}
	if s.Drain > 0 {
		rt.Deregister()
		log.WithField("drain", s.Drain).Info("left consul; still serving")
		select {
		case <-time.After(s.Drain):
		case err := <-rt.Failed():
			errs = append(errs, fmt.Errorf("http server: %w", err))
		}
	}
	stopWork()
	if s.Work != nil && !workEnded {
		errs = append(errs, stage(log, Stage{Name: "work", Timeout: or(s.WorkTimeout, DefaultWorkTimeout),
			Do: func(ctx context.Context) error {
				select {
				case err := <-workDone:
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}}))
	}
	for _, st := range s.Stop {
		errs = append(errs, stage(log, st))
	}
	errs = append(errs, stage(log, Stage{Name: "http", Timeout: or(s.HTTPTimeout, DefaultHTTPTimeout), Do: rt.Close}))
	for _, st := range s.Close {
		errs = append(errs, stage(log, st))
	}
	endLife()
	log.Info("stopped")
	return errors.Join(errs...)
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// stage runs st within its deadline; an overrun is an error and is left
// behind.
func stage(log *logrus.Entry, st Stage) error {
	timeout := or(st.Timeout, DefaultStageTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- st.Do(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	l := log.WithFields(logrus.Fields{"stage": st.Name, "took_ms": time.Since(began).Milliseconds()})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("stop stage %q did not end within its %s deadline; going on without it", st.Name, timeout)
		l.Warn(err.Error())
	case err != nil:
		err = fmt.Errorf("stop stage %q: %w", st.Name, err)
		l.WithError(err).Warn("stop stage failed")
	default:
		l.Debug("stop stage done")
	}
	return err
}
