package deploy

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// NotReady is the one readiness check of the stack, used by make
// nomad-run and by the dev-agent and cluster tests: it says what is not
// yet running and healthy, and nothing when all is. Every job has
// allocations, none queued or starting; every allocation meant to run is
// running and, where a deployment tracks it, healthy; every service has a
// passing instance in Consul.
func NotReady(ctx context.Context, nomad *nomadapi.Client, consul *consulapi.Client, jobs, services []string) ([]string, error) {
	var pending []string
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	for _, job := range jobs {
		summary, _, err := nomad.Jobs().Summary(job, q)
		if err != nil {
			if strings.Contains(err.Error(), "404") {
				pending = append(pending, job+": not registered")
				continue
			}
			return nil, fmt.Errorf("reading job %s's summary from Nomad: %w", job, err)
		}
		if s := waiting(summary); s != "" {
			pending = append(pending, job+": allocations "+s)
			continue
		}
		allocs, _, err := nomad.Jobs().Allocations(job, false, q)
		if err != nil {
			return nil, fmt.Errorf("reading job %s's allocations from Nomad: %w", job, err)
		}
		wanted := 0
		for _, a := range allocs {
			if a.DesiredStatus != nomadapi.AllocDesiredStatusRun {
				continue
			}
			wanted++
			switch {
			case a.ClientStatus != nomadapi.AllocClientStatusRunning:
				pending = append(pending, fmt.Sprintf("%s/%s: allocation %s %s", job, a.TaskGroup, short(a.ID), a.ClientStatus))
			case a.DeploymentStatus != nil && (a.DeploymentStatus.Healthy == nil || !*a.DeploymentStatus.Healthy):
				pending = append(pending, fmt.Sprintf("%s/%s: allocation %s not healthy yet", job, a.TaskGroup, short(a.ID)))
			}
		}
		if wanted == 0 {
			pending = append(pending, job+": no allocation")
		}
	}
	for _, svc := range services {
		addrs, err := Addresses(ctx, consul, svc)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			pending = append(pending, svc+": no passing instance in Consul")
		}
	}
	return pending, nil
}

// waiting names the allocations a job summary still waits for.
func waiting(s *nomadapi.JobSummary) string {
	var queued, starting int
	for _, g := range s.Summary {
		queued += g.Queued
		starting += g.Starting
	}
	switch {
	case queued > 0:
		return strconv.Itoa(queued) + " queued (not placed)"
	case starting > 0:
		return strconv.Itoa(starting) + " starting"
	}
	return ""
}

// Addresses are host:port of the passing instances of a service in
// Consul, sorted; an instance without an address of its own has its
// node's.
func Addresses(ctx context.Context, consul *consulapi.Client, service string) ([]string, error) {
	entries, _, err := consul.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading service %s's instances from Consul: %w", service, err)
	}
	var out []string
	for _, e := range entries {
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host != "" && e.Service.Port > 0 {
			out = append(out, net.JoinHostPort(host, strconv.Itoa(e.Service.Port)))
		}
	}
	sort.Strings(out)
	return out, nil
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
