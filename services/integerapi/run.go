package integerapi

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/svc"
)

// App is integer-api's command line.
func App() *cli.App {
	return cliflags.NewApp(Name, "stores the window averages in Redis and serves them over HTTP", Flags(), func(c *cli.Context) error {
		o, err := ReadOptions(c)
		if err != nil {
			return err
		}
		return svc.Main(Name, "", o.Common, func(ctx context.Context, log *logrus.Entry) error { return Run(ctx, o, log) })
	})
}

// Run serves until ctx ends, then deregisters, lets requests in progress
// finish and closes the store.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	rt, err := svc.Start(Name, o.Common, log)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	redisWatch := discovery.Follow(runCtx, rt.Consul, discovery.Redis(o.RedisService), log)
	store := NewRedisStore(redisWatch, o.RedisPassword, o.RedisDB, o.KeyPrefix, o.Retention)
	defer store.Close()

	rt.SetHealth(func() (bool, map[string]any) {
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		if err := store.Ping(pctx); err != nil {
			return false, map[string]any{"redis": err.Error()}
		}
		return true, map[string]any{"redis": "ok"}
	})
	h := NewHandler(store, o.WriteToken, rt.Metrics, log)
	h.Extra = rt.Mux
	rt.Serve(h)
	go warnWithoutAOF(runCtx, store, log)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-rt.Failed():
		runErr = fmt.Errorf("http server: %w", err)
	}
	log.Info("stopping")
	if o.ShutdownDelay > 0 {
		rt.Deregister()
		log.WithField("shutdown_delay", o.ShutdownDelay).Info("left consul; still serving")
		time.Sleep(o.ShutdownDelay)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := rt.Close(sctx); err != nil && runErr == nil {
		runErr = err
	}
	log.Info("stopped")
	return runErr
}

// warnWithoutAOF says once, when Redis first answers, if acknowledged
// windows could be lost in a crash.
func warnWithoutAOF(ctx context.Context, s *RedisStore, log *logrus.Entry) {
	for ctx.Err() == nil {
		aof, err := s.AOF(ctx)
		if err == nil {
			if !aof {
				log.Warn("redis runs without appendonly: a window acknowledged just before a redis crash can be lost; set appendonly yes and appendfsync always")
			}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
