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
		store, sentinels := openStore(ctx, rt, o, log)
		h := NewHandler(store, o.WriteToken, rt.Metrics, log)
		h.Extra = rt.Mux
		return svc.Service{
			Handler: h,
			Health: func() (bool, map[string]any) {
				pctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				out := map[string]any{}
				if sentinels != nil {
					out = sentinels.health()
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
				warnWithoutAOF(ctx, store, log)
				<-ctx.Done()
				return nil
			},
			Drain: o.ShutdownDelay,
			Close: []svc.Stage{{Name: "redis", Do: func(context.Context) error { return store.Close() }}},
		}, nil
	})
}

// openStore connects to the one Redis Consul lists or, with Sentinels, to
// the primary they name; the monitor is nil without Sentinels.
func openStore(ctx context.Context, rt *svc.Runtime, o Options, log *logrus.Entry) (*RedisStore, *sentinelMonitor) {
	co := ClientOptions{Password: o.RedisPassword, DB: o.RedisDB, ReadTimeout: o.RedisWaitTimeout + time.Second}
	so := StoreOptions{Prefix: o.KeyPrefix, Retention: o.Retention, MinReplicas: o.RedisMinReplicas, WaitTimeout: o.RedisWaitTimeout}
	if o.RedisSentinelService == "" {
		return NewRedisStore(DialConsulRedis(discovery.Follow(ctx, rt.Consul, discovery.Redis(o.RedisService), log), co), so), nil
	}
	redis.SetLogger(redisLogger{log})
	watch := discovery.Follow(ctx, rt.Consul, discovery.RedisSentinel(o.RedisSentinelService), log)
	log.WithFields(logrus.Fields{"sentinels": o.RedisSentinelService, "master": o.RedisMaster, "min_replicas": o.RedisMinReplicas}).
		Info("the store is the Redis primary the Sentinels name")
	return NewRedisStore(DialSentinels(watch, o.RedisMaster, co), so), newSentinelMonitor(watch, o.RedisMaster, o.RedisPassword, log)
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
