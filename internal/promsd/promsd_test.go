package promsd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

// The file follows Consul: an instance registered appears with the labels
// consul_sd_configs gives, stays while its check fails (Prometheus shows
// it down), and goes when it is deregistered.
func TestTheTargetFileFollowsConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	path := filepath.Join(t.TempDir(), "sd", "targets.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c.Client, []string{"integer-api", "integer-gen"}, path, logging.Discard()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	read := func() []Group {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var g []Group
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s is not file_sd JSON: %v\n%s", path, err, data)
		}
		return g
	}
	testenv.Eventually(t, 5*time.Second, "an empty target file", func() bool { g := read(); return g != nil && len(g) == 0 })

	c.Register(t, "integer-api", "api-1", 8080, nil, &consul.AgentServiceCheck{CheckID: "api-1-ttl", TTL: "1m", Status: consul.HealthPassing})
	c.Register(t, "integer-gen", "gen-1", 8081, nil, nil)
	c.Register(t, "redis", "redis-1", 6379, nil, nil) // not asked for
	want := []Group{
		{Targets: []string{"127.0.0.1:8080"}, Labels: map[string]string{"__meta_consul_service": "integer-api", "__meta_consul_service_id": "api-1", "__meta_consul_node": "testnode"}},
		{Targets: []string{"127.0.0.1:8081"}, Labels: map[string]string{"__meta_consul_service": "integer-gen", "__meta_consul_service_id": "gen-1", "__meta_consul_node": "testnode"}},
	}
	testenv.Eventually(t, 10*time.Second, "both instances in the file", func() bool { return reflect.DeepEqual(read(), want) })

	if err := c.Client.Agent().UpdateTTL("api-1-ttl", "", consul.HealthCritical); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Agent().ServiceDeregister("gen-1"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the deregistered instance gone, the failing one kept", func() bool {
		return reflect.DeepEqual(read(), want[:1])
	})
}
