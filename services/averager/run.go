package averager

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/nsqio/go-nsq"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/leader"
	"github.com/loopstock/loopstock/internal/nsqlog"
	"github.com/loopstock/loopstock/internal/nsqpub"
	"github.com/loopstock/loopstock/internal/nsqtls"
	"github.com/loopstock/loopstock/internal/svc"
	"github.com/loopstock/loopstock/internal/windowapi"
	"github.com/loopstock/loopstock/internal/wire"
)

// App is integeraverage-cal's command line.
func App() *cli.App {
	return cliflags.NewApp(Name, "averages the integers of each window and stores the averages through integer-api", Flags(), func(c *cli.Context) error {
		o, err := ReadOptions(c)
		if err != nil {
			return err
		}
		return svc.Main(Name, "", o.Common, func(ctx context.Context, log *logrus.Entry) error { return Run(ctx, o, log) })
	})
}

// Run runs integeraverage-cal until ctx ends: it campaigns for the leader
// lock and, while it holds it, consumes and writes windows. It stops in
// svc's stages: the term ends (held messages handed back, the lock
// released), then the dead-letter publisher, then HTTP and Consul.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	return svc.Run(ctx, Name, o.Common, log, func(ctx context.Context, rt *svc.Runtime) (svc.Service, error) {
		auth, err := o.NSQ.Load(Name)
		if err != nil {
			return svc.Service{}, err
		}
		writer := windowapi.NewClient(discovery.New(ctx, rt.Consul, o.APIService, log), o.WriteToken, 5*time.Second)
		if auth.Enabled() {
			writer.WithTLS(auth.TLS, o.APIService)
		}
		nsqds := discovery.Follow(ctx, rt.Consul, discovery.NSQDFor(o.NSQDService, auth.Enabled()), log)
		registered := discovery.FollowAll(ctx, rt.Consul, discovery.NSQDFor(o.NSQDService, auth.Enabled()), log)
		e := &elector{o: o, rt: rt, m: newMetrics(rt.Metrics), log: log, auth: auth,
			lookupds: discovery.Follow(ctx, rt.Consul, discovery.NSQLookupd(o.LookupdService), log),
			writer:   writer,
			dead:     &deadLetter{pub: nsqpub.New(discovery.NodeName(rt.Consul), nsqds, o.DeadLetterTopic, 5*time.Second, log)},
		}
		if auth.Enabled() {
			e.trusted = newConsulNSQDs(registered, e.m.nsqdRefused, log)
		}
		e.dead.pub.Auth = auth
		// Where a stuck averager waits, for an operator (?debug=2).
		rt.Mux.Handle("GET /debug/pprof/goroutine", pprof.Handler("goroutine"))
		// Every averager, standby or active, reports every nsqd: the backlog
		// is watched even while no averager leads.
		rt.Metrics.MustRegister(newNSQDCollector(registered, o, auth, log))
		log.WithFields(logrus.Fields{"window": o.Window, "topic": o.Topic, "channel": o.Channel}).Info("integeraverage-cal started; campaigning for the leader lock")
		return svc.Service{
			Health: e.health,
			Work:   e.run,
			Stop:   []svc.Stage{{Name: "dead-letter publisher", Do: func(context.Context) error { e.dead.pub.Stop(); return nil }}},
		}, nil
	})
}

// elector runs terms of leadership one after the other.
type elector struct {
	o        Options
	rt       *svc.Runtime
	m        *metrics
	log      *logrus.Entry
	lookupds *discovery.Watch
	trusted  *consulNSQDs // with TLS: the nsqd the consumer may connect to
	writer   Writer
	dead     *deadLetter
	auth     nsqtls.Client

	state sync.Map // "leader": bool, "fence": uint64
}

func (e *elector) health() (bool, map[string]any) {
	isLeader, _ := e.state.Load("leader")
	fence, _ := e.state.Load("fence")
	out := map[string]any{"leader": isLeader == true, "fence": fence}
	if e.auth.Enabled() {
		out["tls"] = e.auth.TLS.Status()
		if err := e.auth.TLS.Check(); err != nil {
			out["tls_error"] = err.Error()
			return false, out
		}
	}
	return true, out
}

// run campaigns and leads until ctx ends; it returns only a fatal error.
func (e *elector) run(ctx context.Context) error {
	o := e.o
	cfg := Config{
		Window: o.Window, Grace: o.Grace, MaxLateness: o.MaxLateness, MaxFuture: o.MaxFuture,
		Limits: wire.Limits{Min: o.Min, Max: o.Max}, TouchEvery: o.MsgTimeout / 3, FlushEvery: 25 * time.Millisecond,
		WriteTimeout: min(5*time.Second, o.MsgTimeout/3),
	}
	if o.CoordinationPrefix != "" {
		cfg.Live = followGenerators(ctx, e.rt.Consul, o.CoordinationPrefix, e.log)
	}
	collisions := make(collisionTable, collisionTableSize) // one for every term: what passed by stays known
	var pause backoff
	for ctx.Err() == nil {
		term, err := leader.Campaign(ctx, e.rt.Consul, leader.Options{
			Key: o.LeaderKey, Value: []byte(e.rt.Service.ID), CheckID: e.rt.Service.CheckID(),
			SessionTTL: o.SessionTTL, LockDelay: time.Second,
		}, e.log)
		if err != nil {
			return nil // ctx ended
		}
		e.state.Store("leader", true)
		e.state.Store("fence", term.Fence)
		e.m.leader.Set(1)
		tlog := e.log.WithField("fence", term.Fence)
		tlog.Info("active: holding the leader lock")
		agg := newAggregator(cfg, term.Fence, e.writer, e.dead, e.m, tlog)
		agg.collisions = collisions
		began := time.Now()
		err = lead(ctx, term, o, e.auth, e.lookupds, e.trusted, agg, tlog)
		e.m.leader.Set(0)
		e.state.Store("leader", false)
		if rerr := term.Resign(); rerr != nil {
			tlog.WithError(rerr).Warn("resigning the leader lock")
		}
		var fatal *fatalError
		switch {
		case errors.As(err, &fatal):
			return fmt.Errorf("this averager cannot consume: %w", err)
		case err != nil:
			if time.Since(began) > time.Minute {
				pause.reset()
			}
			d := pause.next()
			tlog.WithError(err).WithField("retry_in", d.Round(time.Millisecond)).Warn("leadership term ended")
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		default:
			pause.reset()
			tlog.Info("leadership term ended")
		}
	}
	return nil
}

// fatalError is a failure that another term would only repeat: the
// process exits with it.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// backoff is the pause before campaigning again after a term that ended in
// an error: doubling from 250 ms up to 15 s, each drawn from its upper half
// so that averagers that failed together do not come back together.
type backoff struct{ last time.Duration }

func (b *backoff) next() time.Duration {
	b.last = min(max(2*b.last, 250*time.Millisecond), 15*time.Second)
	return b.last/2 + rand.N(b.last/2+1)
}

func (b *backoff) reset() { b.last = 0 }

// lead consumes while term lasts.
// sources are the nsqlookupd instances the consumer asks for nsqd. With
// TLS, trusted keeps of their answers the nsqd that Consul lists, and the
// consumer accepts only an nsqd whose certificate says nsqd
// (docs/design.md §9).
func lead(ctx context.Context, term *leader.Term, o Options, auth nsqtls.Client, sources *discovery.Watch, trusted *consulNSQDs, agg *Aggregator, log *logrus.Entry) error {
	termCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-term.Lost:
			log.Warn("leader lock lost")
			cancel()
		case <-termCtx.Done():
		}
	}()

	ncfg, err := o.nsqConfig()
	if err != nil {
		return &fatalError{err}
	}
	// With TLS the consumer connects only to an nsqd whose certificate says
	// nsqd, and that Consul lists: nsqlookupd's answers are not trusted.
	auth.Apply(ncfg)
	if trusted != nil {
		// Consul's first answer before nsqlookupd's: else every nsqd would
		// be refused until the next poll.
		if _, err := trusted.registered.Wait(termCtx); err != nil {
			return nil // the term ended
		}
	}
	consumer, err := nsq.NewConsumer(o.Topic, o.Channel, ncfg)
	if err != nil {
		return &fatalError{fmt.Errorf("nsq consumer: %w", err)}
	}
	consumer.SetLogger(nsqlog.New(log), nsq.LogLevelWarning)
	if trusted != nil {
		consumer.SetBehaviorDelegate(trusted)
	}
	in := make(chan Message)
	consumer.AddHandler(nsq.HandlerFunc(func(msg *nsq.Message) error {
		msg.DisableAutoResponse()
		select {
		case in <- nsqMessage{msg}:
		case <-termCtx.Done():
			msg.Requeue(0)
		}
		return nil
	}))
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		followLookupds(termCtx, consumer, sources, log)
	}()

	err = agg.Run(termCtx, in)
	cancel()
	<-followed
	consumer.Stop()
	select {
	case <-consumer.StopChan:
	case <-time.After(5 * time.Second): // leaves the resignation its time within svc's WorkTimeout
		log.Warn("nsq consumer did not stop within 5s")
	}
	return err
}

// followLookupds connects the consumer to every passing nsqlookupd and
// follows changes until ctx ends.
func followLookupds(ctx context.Context, c *nsq.Consumer, w *discovery.Watch, log *logrus.Entry) {
	connected := map[string]bool{}
	for {
		list, changed, _ := w.Current()
		want := map[string]bool{}
		for _, i := range list {
			want[i.Addr()] = true
		}
		for addr := range want {
			if !connected[addr] {
				if err := c.ConnectToNSQLookupd(addr); err != nil {
					log.WithError(err).WithField("nsqlookupd", addr).Warn("connecting to nsqlookupd")
					continue
				}
				connected[addr] = true
				log.WithField("nsqlookupd", addr).Info("following nsqlookupd")
			}
		}
		for addr := range connected {
			if !want[addr] {
				// go-nsq refuses to drop its last nsqlookupd; keep it until another appears.
				if err := c.DisconnectFromNSQLookupd(addr); err == nil {
					delete(connected, addr)
					log.WithField("nsqlookupd", addr).Info("nsqlookupd left consul; disconnected")
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

type nsqMessage struct{ m *nsq.Message }

func (n nsqMessage) Body() []byte                { return n.m.Body }
func (n nsqMessage) Finish()                     { n.m.Finish() }
func (n nsqMessage) Touch()                      { n.m.Touch() }
func (n nsqMessage) Requeue(delay time.Duration) { n.m.Requeue(delay) }

// DeadLetterMessage is what the dead-letter topic carries: JSON, readable
// in nsqadmin, with the rejected bytes intact.
type DeadLetterMessage struct {
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail"`
	RejectedAt time.Time `json:"rejected_at"`
	// Body is the rejected message (or the rejected part, re-encoded), base64.
	Body string `json:"body"`
}

type deadLetter struct {
	mu  sync.Mutex
	pub *nsqpub.Publisher
}

func (d *deadLetter) Reject(reason, detail string, body []byte) error {
	msg, err := json.Marshal(DeadLetterMessage{Reason: reason, Detail: detail, RejectedAt: time.Now().UTC(), Body: base64.StdEncoding.EncodeToString(body)})
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.pub.Publish(msg); err != nil {
		return errors.New("dead-letter topic: " + err.Error())
	}
	return nil
}
