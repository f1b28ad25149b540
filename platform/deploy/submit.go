package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Parse has the Nomad agent parse a job file with the variables given as
// the text of a var file: Nomad's own parser judges the file, and its
// error names the line.
func Parse(nomad *nomadapi.Client, jobFile, variables string) (*nomadapi.Job, error) {
	src, err := os.ReadFile(jobFile)
	if err != nil {
		return nil, err
	}
	job, err := nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{JobHCL: string(src), Variables: variables, Canonicalize: true})
	if err != nil {
		return nil, fmt.Errorf("%s: Nomad refused the job file: %w", jobFile, err)
	}
	return job, nil
}

// Outcome is what Submit saw of one job.
type Outcome struct {
	Job          string
	EvalID       string
	Unplaced     map[string]int // task group → allocations not placed (yet)
	DeploymentID string         // "" when the job started none (unchanged, or a system job)
}

// Submit registers a job and follows its evaluation, then its deployment
// until it is successful, as Nomad's own end-to-end tests do. An
// evaluation that a server not yet caught up cannot find is waited for; a
// placement that is not complete yet is reported, not fatal (Nomad retries
// it, and the readiness wait tells what stays unplaced). A failed
// deployment is an error naming the job, the allocation and its failing
// task's last event.
func Submit(ctx context.Context, nomad *nomadapi.Client, job *nomadapi.Job, out io.Writer) (*Outcome, error) {
	id := *job.ID
	wq := (&nomadapi.WriteOptions{}).WithContext(ctx)
	resp, _, err := nomad.Jobs().Register(job, wq)
	if err != nil {
		return nil, fmt.Errorf("%s: registering the job: %w", id, err)
	}
	if resp.Warnings != "" {
		fmt.Fprintf(out, "==> %s: Nomad warns: %s\n", id, strings.TrimSpace(resp.Warnings))
	}
	o := &Outcome{Job: id, EvalID: resp.EvalID}
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	var eval *nomadapi.Evaluation
	err = poll(ctx, 2*time.Minute, func() error {
		e, _, err := nomad.Evaluations().Info(resp.EvalID, q)
		if err != nil {
			return fmt.Errorf("%s: evaluation %s: %w", id, short(resp.EvalID), err)
		}
		switch e.Status {
		case "complete":
			eval = e
			return nil
		case "failed", "canceled":
			return permanent{fmt.Errorf("%s: evaluation %s %s: %s", id, short(e.ID), e.Status, e.StatusDescription)}
		}
		return fmt.Errorf("%s: evaluation %s still %s", id, short(e.ID), e.Status)
	})
	if err != nil {
		return nil, err
	}
	if len(eval.FailedTGAllocs) > 0 {
		o.Unplaced = map[string]int{}
		for g, m := range eval.FailedTGAllocs {
			o.Unplaced[g] = m.CoalescedFailures + 1
		}
	}
	o.DeploymentID = eval.DeploymentID
	if o.DeploymentID == "" {
		// An unchanged job starts no deployment; its current one, if it is
		// of this version, still says whether the job is healthy.
		info, _, err := nomad.Jobs().Info(id, q)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the job back: %w", id, err)
		}
		d, _, err := nomad.Jobs().LatestDeployment(id, q)
		if err != nil {
			return nil, fmt.Errorf("%s: reading its latest deployment: %w", id, err)
		}
		if d == nil || info.Version == nil || d.JobVersion != *info.Version {
			return o, nil
		}
		o.DeploymentID = d.ID
	}
	return o, followDeployment(ctx, nomad, id, o.DeploymentID, out)
}

// followDeployment waits until a deployment succeeds; when it fails, the
// error says why, with the unhealthy allocations' last task events.
func followDeployment(ctx context.Context, nomad *nomadapi.Client, job, id string, out io.Writer) error {
	var index uint64
	last := ""
	for {
		q := (&nomadapi.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx)
		d, meta, err := nomad.Deployments().Info(id, q)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: deployment %s: %w", job, short(id), ctx.Err())
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		index = meta.LastIndex
		if progress := deploymentProgress(d); progress != last {
			fmt.Fprintf(out, "==> %s: deployment %s %s\n", job, short(id), progress)
			last = progress
		}
		switch d.Status {
		case nomadapi.DeploymentStatusSuccessful:
			return nil
		case nomadapi.DeploymentStatusFailed, nomadapi.DeploymentStatusCancelled:
			return fmt.Errorf("%s: deployment %s %s (%s)%s", job, short(id), d.Status, d.StatusDescription, failingAllocations(ctx, nomad, id))
		}
	}
}

func deploymentProgress(d *nomadapi.Deployment) string {
	var healthy, desired int
	for _, g := range d.TaskGroups {
		healthy += g.HealthyAllocs
		desired += g.DesiredTotal
	}
	return fmt.Sprintf("%s: %d/%d healthy", d.Status, healthy, desired)
}

// failingAllocations describes a deployment's allocations that are not
// healthy: which, where, and each failing task's last event.
func failingAllocations(ctx context.Context, nomad *nomadapi.Client, deployment string) string {
	allocs, _, err := nomad.Deployments().Allocations(deployment, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Sprintf("; its allocations could not be read: %v", err)
	}
	var lines []string
	for _, a := range allocs {
		if a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy {
			continue
		}
		line := fmt.Sprintf("allocation %s (group %s) on %s is %s", short(a.ID), a.TaskGroup, a.NodeName, a.ClientStatus)
		for _, name := range sortedKeys(a.TaskStates) {
			st := a.TaskStates[name]
			if n := len(st.Events); n > 0 {
				line += fmt.Sprintf("; task %s %s, last event %s: %s", name, st.State, st.Events[n-1].Type, eventText(st.Events[n-1]))
			}
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return ""
	}
	return ":\n  " + strings.Join(lines, "\n  ")
}

// eventText is what an operator reads of a task event.
func eventText(ev *nomadapi.TaskEvent) string {
	if ev.DisplayMessage != "" {
		return ev.DisplayMessage
	}
	return ev.Message
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
