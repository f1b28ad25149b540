package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

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

// Diagnose describes the allocations of jobs that are meant to run: each
// task's state, its restarts, its last events, and the last lines of its
// output, so that a deploy that does not become ready says why without an
// operator having to go and look. Errors reading a part are said in place.
func Diagnose(ctx context.Context, nomad *nomadapi.Client, jobs []string) string {
	var b strings.Builder
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	for _, job := range jobs {
		allocs, _, err := nomad.Jobs().Allocations(job, false, q)
		if err != nil {
			fmt.Fprintf(&b, "%s: allocations not readable: %v\n", job, err)
			continue
		}
		for _, stub := range allocs {
			if stub.DesiredStatus != nomadapi.AllocDesiredStatusRun {
				continue
			}
			fmt.Fprintf(&b, "%s/%s allocation %s on %s: %s\n", job, stub.TaskGroup, short(stub.ID), stub.NodeName, stub.ClientStatus)
			alloc, _, err := nomad.Allocations().Info(stub.ID, q)
			if err != nil {
				fmt.Fprintf(&b, "  not readable: %v\n", err)
				continue
			}
			// Nomad's own checks (provider "nomad"), which gate deployments.
			if checks, err := nomad.Allocations().Checks(stub.ID, q); err == nil {
				for _, id := range sortedKeys(checks) {
					ch := checks[id]
					fmt.Fprintf(&b, "  check %q of %s: %s (HTTP %d) %s\n", ch.Check, ch.Service, ch.Status, ch.StatusCode, strings.TrimSpace(ch.Output))
				}
			}
			for _, name := range sortedKeys(alloc.TaskStates) {
				st := alloc.TaskStates[name]
				fmt.Fprintf(&b, "  task %s %s, %d restarts\n", name, st.State, st.Restarts)
				events := st.Events
				if len(events) > 3 {
					events = events[len(events)-3:]
				}
				for _, ev := range events {
					fmt.Fprintf(&b, "    %s %s: %s\n", time.Unix(0, ev.Time).UTC().Format(time.TimeOnly), ev.Type, eventText(ev))
				}
				for _, stream := range []string{"stderr", "stdout"} {
					if tail := logTail(ctx, nomad, alloc, name, stream, 5); tail != "" {
						fmt.Fprintf(&b, "    %s:\n      %s\n", stream, strings.ReplaceAll(tail, "\n", "\n      "))
					}
				}
			}
		}
	}
	return b.String()
}

// logTail is the last lines of a task's output, read through the Nomad
// client that runs it ("" when it cannot be read or is empty).
func logTail(ctx context.Context, nomad *nomadapi.Client, alloc *nomadapi.Allocation, task, stream string, lines int) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := nomad.AllocFS().Cat(alloc, "alloc/logs/"+task+"."+stream+".0", (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return ""
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.TrimSpace(strings.Join(all, "\n"))
}
