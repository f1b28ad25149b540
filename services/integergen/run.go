package integergen

import (
	"context"
	"crypto/rand"
	"errors"
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

// Run runs integer-gen until ctx ends, then stops in svc's stages: no new
// slots, the coordination lease released and the queue drained to nsqd
// (the work), the publisher closed, then HTTP and Consul.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	return svc.Run(ctx, Name, o.Common, log, func(ctx context.Context, rt *svc.Runtime) (svc.Service, error) {
		profile(rt.Mux)
		m := newMetrics(rt.Metrics)
		rt.Service.Meta = map[string]string{"instance": o.Instance.String()}
		coord := slotlease.New(rt.Consul, slotlease.Options{
			Prefix: o.CoordinationPrefix, Instance: o.Instance.String(), CheckID: rt.Service.CheckID(),
			Interval: o.Interval, Min: o.Min, Max: o.Max, MaxGenerators: o.MaxGenerators, PerSlot: o.PerSlot, LeaseAhead: o.LeaseAhead,
		}, log)
		registerCoordinationMetrics(rt.Metrics, coord)
		auth, err := o.NSQ.Load(Name)
		if err != nil {
			return svc.Service{}, err
		}
		nsqds := discovery.Follow(ctx, rt.Consul, discovery.NSQDFor(o.NSQDService, auth.Enabled()), log)
		pub := nsqpub.NewCopies(discovery.NodeName(rt.Consul), nsqds, o.Topic, o.PublishTimeout, o.NSQDCopies, log)
		pub.Auth = auth
		g := newGenerator(o, coord, newTopicPublisher(pub, nsqds, o.Topic, o.Channel, auth), m, log)
		return svc.Service{
			Health: func() (bool, map[string]any) {
				index, hw := coord.State()
				out := map[string]any{"index": index, "lease_hw_slot": hw, "nsqd": pub.Addr(), "queued": g.queued.Load()}
				if auth.Enabled() {
					out["tls"] = auth.TLS.Status()
					if err := auth.TLS.Check(); err != nil {
						out["tls_error"] = err.Error()
						return false, out
					}
				}
				return true, out
			},
			Work: func(ctx context.Context) error {
				log.WithFields(logrus.Fields{"interval": o.Interval, "min": o.Min, "max": o.Max, "topic": o.Topic}).Info("integer-gen started")
				return generate(ctx, coord, g)
			},
			Stop: []svc.Stage{{Name: "publisher", Do: func(context.Context) error { pub.Stop(); return nil }}},
		}, nil
	})
}

// generate draws and publishes until ctx ends, then releases the lease and
// drains the queue. It returns early only when this generator's flags
// disagree with its group's.
func generate(ctx context.Context, coord *slotlease.Coordinator, g *Generator) error {
	tickCtx, stopTicks := context.WithCancel(ctx)
	defer stopTicks()
	coordDone := make(chan struct{})
	var coordErr error
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

	var runErr error
	select {
	case <-ctx.Done():
	case <-coordDone:
		var mm *slotlease.MismatchError
		if errors.As(coordErr, &mm) {
			runErr = coordErr // flags that disagree with the group's: exit
		}
	}
	stopTicks()
	<-coordDone
	<-published
	return runErr
}
