// Package promsd writes the instances of Consul services as a Prometheus
// file_sd target file, for the local stack's Prometheus: Debian's
// prometheus package is built without consul_sd_configs. Each instance
// carries the labels consul_sd_configs would give it
// (__meta_consul_service, __meta_consul_service_id, __meta_consul_node), so
// the relabelling is the one a Prometheus with Consul discovery uses.
package promsd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	consul "github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/loopstock/loopstock/internal/discovery"
)

// Group is one file_sd target group.
type Group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Groups are the target groups of the instances of each service, one
// instance a group, in a stable order.
func Groups(instances map[string][]discovery.Instance) []Group {
	names := make([]string, 0, len(instances))
	for name := range instances {
		names = append(names, name)
	}
	sort.Strings(names)
	out := []Group{}
	for _, name := range names {
		for _, i := range instances[name] {
			out = append(out, Group{Targets: []string{i.Addr()}, Labels: map[string]string{
				"__meta_consul_service": name, "__meta_consul_service_id": i.ID, "__meta_consul_node": i.Node,
			}})
		}
	}
	return out
}

// Run follows services in Consul, failing instances included (Prometheus
// shows them down), and rewrites path at every change until ctx ends. The
// file starts empty, so Prometheus has a file to read before Consul answers.
func Run(ctx context.Context, client *consul.Client, services []string, path string, log *logrus.Entry) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	watches := map[string]*discovery.Watch{}
	changed := make(chan struct{}, 1)
	for _, s := range services {
		w := discovery.FollowAll(ctx, client, discovery.Contract{Service: s}, log)
		watches[s] = w
		go func() {
			for {
				// Signalled after subscribing: a change between the main
				// loop's read and this subscription is not lost.
				_, next, _ := w.Current()
				select {
				case changed <- struct{}{}:
				default: // a rewrite is already due
				}
				select {
				case <-ctx.Done():
					return
				case <-next:
				}
			}
		}()
	}
	var written []byte
	for {
		now := map[string][]discovery.Instance{}
		for s, w := range watches {
			now[s], _, _ = w.Current()
		}
		groups := Groups(now)
		data, err := json.MarshalIndent(groups, "", "  ")
		if err != nil {
			return err
		}
		if !bytes.Equal(data, written) {
			if err := write(path, data); err != nil {
				return err
			}
			written = data
			log.WithField("targets", len(groups)).Debug("prometheus targets written")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// write replaces path in one rename: Prometheus never reads half a file.
func write(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".targets-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
