// Package svc is the runtime every service shares: an HTTP listener with
// /health and /metrics, a Consul client, the service's registration, and
// one lifecycle — start, serve, stop in stages with deadlines — so the
// services stop the same way.
//
// A service's Run hands Run (this package's) a setup function:
//
//	return svc.Run(ctx, Name, o.Common, log, func(ctx context.Context, rt *svc.Runtime) (svc.Service, error) {
//		watch := discovery.Follow(ctx, rt.Consul, discovery.Redis(o.RedisService), log) // lives until the end
//		store := NewStore(watch)
//		return svc.Service{
//			Handler: handler,                       // nil: only /health and /metrics
//			Health:  func() (bool, map[string]any) { … },
//			Work:    func(ctx context.Context) error { … }, // until ctx ends; an error is fatal
//			Drain:   o.ShutdownDelay,               // leave Consul first, keep serving this long
//			Stop:    []svc.Stage{{Name: "publisher", Timeout: 5 * time.Second, Do: …}},
//			Close:   []svc.Stage{{Name: "store", Do: func(context.Context) error { return store.Close() }}},
//		}, nil
//	})
//
// Start: listen on --http-addr and make the Consul client (Start), then
// setup builds the service's parts. Serve: the HTTP server and the Consul
// registration start, then Work. Stop, when ctx ends (SIGINT, SIGTERM),
// Work fails or the HTTP server fails, in this order:
//
//  1. with Drain > 0: leave Consul (/health says 503 "stopping") and keep
//     serving for Drain, so clients that just looked the service up are
//     still answered;
//  2. Work's context ends; Work has WorkTimeout (10 s) to return;
//  3. the Stop stages, in order, each within its Timeout (5 s);
//  4. leave Consul (if not done yet) and stop the HTTP server, letting
//     requests in progress finish within HTTPTimeout (5 s);
//  5. the Close stages, in order: what requests in progress still used;
//  6. setup's ctx ends (watches, helpers).
//
// A stage that overruns its deadline is left behind and the stop goes on,
// so a stop always ends. Run returns Work's error, or the HTTP server's,
// joined with those of the stages.
package svc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/cliflags"
	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/registry"
)

// HealthFunc reports whether the service can do its work, and details for
// operators. A false turns the Consul check critical.
type HealthFunc func() (ok bool, detail map[string]any)

// Runtime is one running service's shared parts.
type Runtime struct {
	Name    string
	Log     *logrus.Entry
	Consul  *consul.Client
	Metrics *prometheus.Registry
	Mux     *http.ServeMux
	// Service is what is (or will be) registered in Consul.
	Service registry.Service

	listener net.Listener
	server   *http.Server
	served   chan error
	reg      *registry.Registrar

	mu       sync.Mutex
	health   HealthFunc
	stopping bool
}

// Start listens on cm.HTTPAddr and builds the Consul client; nothing is
// registered until Register.
func Start(name string, cm cliflags.Common, log *logrus.Entry) (*Runtime, error) {
	cfg := consul.DefaultConfig()
	cfg.Address = cm.ConsulAddr
	client, err := consul.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cm.ConsulAddr, err)
	}
	ln, err := net.Listen("tcp", cm.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--http-addr): %w", cm.HTTPAddr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := &Runtime{Name: name, Log: log, Consul: client, Metrics: reg, Mux: http.NewServeMux(), listener: ln, served: make(chan error, 1)}
	r.Mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	r.Mux.HandleFunc("GET /health", r.serveHealth)

	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	adv := cm.AdvertiseAddr
	if adv == "" {
		if h, _, _ := net.SplitHostPort(cm.HTTPAddr); h != "" && h != "0.0.0.0" && h != "::" {
			adv = h
		}
	}
	checkHost := adv
	if checkHost == "" || net.ParseIP(host).IsLoopback() {
		checkHost = host // the local agent runs the check
	}
	if ip := net.ParseIP(checkHost); ip == nil || ip.IsUnspecified() {
		checkHost = "127.0.0.1"
	}
	id := cm.ServiceID
	if id == "" {
		hn, _ := os.Hostname()
		id = fmt.Sprintf("%s-%s-%d", name, hn, port)
	}
	r.Service = registry.Service{
		Name: name, ID: id, Address: adv, Port: port,
		HealthURL: "http://" + net.JoinHostPort(checkHost, portStr) + "/health",
	}
	return r, nil
}

// Addr is the HTTP listener's address.
func (r *Runtime) Addr() string { return r.listener.Addr().String() }

// SetHealth sets what /health reports.
func (r *Runtime) SetHealth(f HealthFunc) {
	r.mu.Lock()
	r.health = f
	r.mu.Unlock()
}

func (r *Runtime) serveHealth(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	f, stopping := r.health, r.stopping
	r.mu.Unlock()
	ok, detail := true, map[string]any{}
	if f != nil {
		ok, detail = f()
	}
	if detail == nil {
		detail = map[string]any{}
	}
	detail["service"] = r.Name
	detail["status"] = "ok"
	code := http.StatusOK
	if stopping {
		ok = false
		detail["stopping"] = true
	}
	if !ok {
		code = http.StatusServiceUnavailable
		detail["status"] = "unhealthy"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(detail)
}

// Serve starts the HTTP server (with handler, or the runtime's mux) and the
// Consul registration.
func (r *Runtime) Serve(handler http.Handler) {
	if handler == nil {
		handler = r.Mux
	}
	r.server = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		err := r.server.Serve(r.listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		r.served <- err
	}()
	r.reg = registry.Start(r.Consul, r.Service, r.Log)
	r.Log.WithField("addr", r.Addr()).Info("serving")
}

// Failed is closed-with-error when the HTTP server stops unexpectedly.
func (r *Runtime) Failed() <-chan error { return r.served }

// Deregister marks the service as stopping (its /health turns 503) and
// removes it from Consul, so nothing new is sent its way.
func (r *Runtime) Deregister() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	if r.reg != nil {
		if err := r.reg.Deregister(); err != nil {
			r.Log.WithError(err).Warn("deregistration failed; consul reaps the instance once its check fails")
		}
		r.reg = nil
	}
}

// Close deregisters (if not done yet) and stops the HTTP server, letting
// requests in progress finish until ctx ends.
func (r *Runtime) Close(ctx context.Context) error {
	r.Deregister()
	if r.server == nil {
		return r.listener.Close()
	}
	return r.server.Shutdown(ctx)
}

// signalContext ends at SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// Main runs a service from its command line: the logger (service and
// instance fields on every line), SIGINT/SIGTERM ending ctx, then run.
// An empty instance means host-pid.
func Main(name, instance string, cm cliflags.Common, run func(ctx context.Context, log *logrus.Entry) error) error {
	if instance == "" {
		host, _ := os.Hostname()
		instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	log, err := logging.New(os.Stderr, name, instance, cm.LogLevel, cm.LogFormat)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return run(ctx, log)
}
