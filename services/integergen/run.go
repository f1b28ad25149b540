package integergen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/nsqpub"
	"github.com/loopstock/loopstock/internal/slotlease"
	"github.com/loopstock/loopstock/internal/svc"
)

// App is integer-gen's command line.
func App() *cli.App {
	return cliflags.NewApp(Name, "draws one integer per slot and publishes it to NSQ", Flags(), func(c *cli.Context) error {
		o, err := ReadOptions(c)
		if err != nil {
			return err
		}
		rand.Read(o.Instance[:])
		return svc.Main(Name, o.Instance.String(), o.Common, func(ctx context.Context, log *logrus.Entry) error { return Run(ctx, o, log) })
	})
}

// Run runs integer-gen until ctx ends, then stops in order: no new slots,
// the coordination lease released, the queue drained to nsqd, deregistered.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	rt, err := svc.Start(Name, o.Common, log)
	if err != nil {
		return err
	}
	m := newMetrics(rt.Metrics)
	rt.Service.Meta = map[string]string{"instance": o.Instance.String()}

	coord := slotlease.New(rt.Consul, slotlease.Options{
		Prefix: o.CoordinationPrefix, Instance: o.Instance.String(), CheckID: rt.Service.CheckID(),
		Interval: o.Interval, Min: o.Min, Max: o.Max, MaxGenerators: o.MaxGenerators, PerSlot: o.PerSlot, LeaseAhead: o.LeaseAhead,
	}, log)
	registerCoordinationMetrics(rt.Metrics, coord)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	nsqd := discovery.New(runCtx, rt.Consul, o.NSQDService, log)
	pub := nsqpub.New(rt.Consul.Agent(), nsqd, o.Topic, o.PublishTimeout, log)
	g := newGenerator(o, coord, pub, m, log)
	rt.SetHealth(func() (bool, map[string]any) {
		index, hw := coord.State()
		return true, map[string]any{"index": index, "lease_hw_slot": hw, "nsqd": pub.Addr(), "queued": len(g.queue)}
	})
	rt.Serve(nil)

	coordDone := make(chan struct{})
	var coordErr error
	tickCtx, stopTicks := context.WithCancel(runCtx)
	go func() {
		coordErr = coord.Run(tickCtx)
		close(coordDone)
	}()
	published := make(chan struct{})
	go func() {
		g.PublishAll(tickCtx, 5*time.Second)
		close(published)
	}()
	go g.Tick(tickCtx)
	log.WithFields(logrus.Fields{"interval": o.Interval, "min": o.Min, "max": o.Max, "topic": o.Topic}).Info("integer-gen started")

	var runErr error
	select {
	case <-ctx.Done():
	case <-coordDone:
		var mm *slotlease.MismatchError
		if errors.As(coordErr, &mm) {
			runErr = coordErr // flags that disagree with the group's: exit
		}
	case err := <-rt.Failed():
		runErr = fmt.Errorf("http server: %w", err)
	}
	log.Info("stopping")
	stopTicks()
	<-coordDone
	<-published
	pub.Stop()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := rt.Close(sctx); err != nil && runErr == nil {
		runErr = err
	}
	log.Info("stopped")
	return runErr
}
