// Package registry registers a service instance in its local Consul agent
// with an HTTP health check, keeps it registered (a restarted agent forgets
// its services), and deregisters it on a graceful stop.
package registry

import (
	"context"
	"fmt"
	"strconv"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"
)

// Service describes one instance to register.
type Service struct {
	Name string
	ID   string
	// Address is advertised to other services; empty means the agent's
	// node address, which is right on a cluster where the service listens
	// on all interfaces.
	Address string
	Port    int
	// HealthURL is polled by the local agent.
	HealthURL string
	Tags      []string
	Meta      map[string]string
	// CheckInterval defaults to 2s; a crashed instance is deregistered
	// after DeregisterAfter (default 1m) of failing checks.
	CheckInterval   time.Duration
	DeregisterAfter time.Duration
}

// CheckID is the ID of the service's health check, which a Consul session
// can name so that a crash ends the session at once.
func (s Service) CheckID() string { return "service:" + s.ID }

func (s Service) registration() *consul.AgentServiceRegistration {
	interval, reap := s.CheckInterval, s.DeregisterAfter
	if interval == 0 {
		interval = 2 * time.Second
	}
	if reap == 0 {
		reap = time.Minute
	}
	return &consul.AgentServiceRegistration{
		ID: s.ID, Name: s.Name, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta,
		Check: &consul.AgentServiceCheck{
			CheckID:  s.CheckID(),
			Name:     s.Name + " health",
			HTTP:     s.HealthURL,
			Interval: interval.String(),
			Timeout:  "1s",
			// Start passing so that a session tied to this check can be
			// created at once; a failing /health turns it critical within
			// one interval.
			Status:                         consul.HealthPassing,
			DeregisterCriticalServiceAfter: reap.String(),
		},
	}
}

// Registrar keeps one service registered until Deregister.
type Registrar struct {
	client *consul.Client
	svc    Service
	log    *logrus.Entry
	cancel context.CancelFunc
	done   chan struct{}
}

// Start registers svc and keeps it registered in the background: when the
// agent is down it retries, and when the agent has lost the registration it
// registers again. It returns at once; Registered reports the first success.
func Start(client *consul.Client, svc Service, log *logrus.Entry) *Registrar {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registrar{client: client, svc: svc, log: log.WithField("consul_service_id", svc.ID), cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r
}

// Every is how often the registration is checked.
const Every = 3 * time.Second

func (r *Registrar) run(ctx context.Context) {
	defer close(r.done)
	registered := false
	// The first round registers whatever the agent holds: a registration
	// left by a crashed process with the same ID has a critical check,
	// which a fresh registration resets.
	first := true
	for {
		present, err := r.present()
		if first && err == nil {
			present, first = false, false
		}
		switch {
		case err != nil:
			if registered {
				r.log.WithError(err).Warn("consul agent unreachable; will register again when it is back")
			}
			registered = false
		case !present:
			if err := r.client.Agent().ServiceRegister(r.svc.registration()); err != nil {
				r.log.WithError(err).Warn("registering in consul failed; retrying")
			} else {
				r.log.WithField("health_url", r.svc.HealthURL).Info("registered in consul")
				registered = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(Every):
		}
	}
}

func (r *Registrar) present() (bool, error) {
	// The whole list, not Agent().Service(id): a missing ID there is
	// logged as an error by the agent on every check.
	services, err := r.client.Agent().ServicesWithFilter("ID == " + strconv.Quote(r.svc.ID))
	if err != nil {
		return false, err
	}
	return services[r.svc.ID] != nil, nil
}

// Deregister stops the upkeep and removes the service from the agent.
func (r *Registrar) Deregister() error {
	r.cancel()
	<-r.done
	if err := r.client.Agent().ServiceDeregister(r.svc.ID); err != nil {
		return fmt.Errorf("deregistering %s from consul: %w", r.svc.ID, err)
	}
	r.log.Info("deregistered from consul")
	return nil
}
