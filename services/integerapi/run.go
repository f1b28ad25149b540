package integerapi

import (
	"context"
	"time"

	"github.com/go-redis/redis/v8"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/discovery"
	"github.com/loopstock/loopstock/internal/svc"
	"github.com/loopstock/loopstock/internal/tlsid"
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

// Run serves until ctx ends, then stops in svc's stages: it leaves Consul
// (and keeps serving --shutdown-delay), lets requests in progress finish,
// and closes the store last.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	return svc.Run(ctx, Name, o.Common, log, func(ctx context.Context, rt *svc.Runtime) (svc.Service, error) {
		var certs *tlsid.Source
		if o.TLSOn {
			var err error
			if certs, err = cliflags.LoadTLS(Name, o.TLS); err != nil {
				return svc.Service{}, err
			}
		}
		store, sentinels := openStore(ctx, rt, o, certs, log)
		h := NewHandler(store, o.WriteToken, rt.Metrics, log)
		h.Extra = rt.Mux
		var writes *writeListener
		if certs != nil {
			h.Writers = o.Writers
			var err error
			if writes, err = listenWrites(o.WriteAddr, h, certs.ServerConfig(o.Writers...), log); err != nil {
				store.Close()
				return svc.Service{}, err
			}
			rt.Service.Meta = map[string]string{"write_port": writes.port()}
		}
		return svc.Service{
			Handler: h,
			Health: func() (bool, map[string]any) {
				pctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				out := map[string]any{}
				if sentinels != nil {
					out = sentinels.health()
				}
				if certs != nil {
					out["tls"] = certs.Status()
					if err := certs.Check(); err != nil {
						out["tls_error"] = err.Error()
						return false, out
					}
				}
				out["redis"] = "ok"
				if err := store.Ping(pctx); err != nil {
					out["redis"] = err.Error()
					return false, out
				}
				return true, out
			},
			Work: func(ctx context.Context) error {
				if sentinels != nil {
					go sentinels.run(ctx, 2*time.Second)
				}
				writes.serve()
				warnWithoutAOF(ctx, store, log)
				<-ctx.Done()
				return nil
			},
			Drain: o.ShutdownDelay,
			Close: []svc.Stage{
				{Name: "write listener", Do: writes.shutdown},
				{Name: "redis", Do: func(context.Context) error { return store.Close() }},
			},
		}, nil
	})
}

// openStore connects to the one Redis Consul lists or, with Sentinels, to
// the primary they name; the monitor is nil without Sentinels.
func openStore(ctx context.Context, rt *svc.Runtime, o Options, certs *tlsid.Source, log *logrus.Entry) (*RedisStore, *sentinelMonitor) {
	co := ClientOptions{Username: o.RedisUser, Password: o.RedisPassword, DB: o.RedisDB, ReadTimeout: o.RedisWaitTimeout + time.Second, TLS: certs}
	so := StoreOptions{Prefix: o.KeyPrefix, Retention: o.Retention, MinReplicas: o.RedisMinReplicas, WaitTimeout: o.RedisWaitTimeout}
	if o.RedisSentinelService == "" {
		return NewRedisStore(DialConsulRedis(discovery.Follow(ctx, rt.Consul, discovery.Redis(o.RedisService), log), co), so), nil
	}
	redis.SetLogger(redisLogger{log})
	watch := discovery.Follow(ctx, rt.Consul, discovery.RedisSentinel(o.RedisSentinelService), log)
	log.WithFields(logrus.Fields{"sentinels": o.RedisSentinelService, "master": o.RedisMaster, "min_replicas": o.RedisMinReplicas}).
		Info("the store is the Redis primary the Sentinels name")
	return NewRedisStore(DialSentinels(watch, o.RedisMaster, co), so), newSentinelMonitor(watch, o.RedisMaster, co, log)
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
