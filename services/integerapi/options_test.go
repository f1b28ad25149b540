package integerapi

import (
	"strings"
	"testing"
)

func TestDefaultsAndValidation(t *testing.T) {
	o, err := ParseArgs([]string{"--write-token", "secret-token"})
	if err != nil || o.RedisService != "redis" || o.Retention != 17280 || o.HTTPAddr != "127.0.0.1:8080" {
		t.Fatalf("%+v %v", o, err)
	}
	if o.RedisSentinelService != "" || o.RedisMinReplicas != 0 {
		t.Errorf("without Sentinels: %+v, want no replica waited for", o)
	}
	o, err = ParseArgs([]string{"--write-token", "secret-token", "--redis-sentinel-service", "redis-sentinel"})
	if err != nil || o.RedisMinReplicas != 1 || o.RedisMaster != "loopstock" || o.RedisWaitTimeout.Milliseconds() != 500 {
		t.Errorf("with Sentinels: %+v %v, want one replica waited for 500ms", o, err)
	}
	o, err = ParseArgs([]string{"--write-token", "secret-token", "--redis-sentinel-service", "redis-sentinel", "--redis-min-replicas", "0"})
	if err != nil || o.RedisMinReplicas != 0 {
		t.Errorf("single-copy writes accepted by the operator: %+v %v", o, err)
	}
	cases := map[string][]string{
		"redis-min-replicas": {"--write-token", "secret-token", "--redis-min-replicas", "-1"},
		"redis-wait-timeout": {"--write-token", "secret-token", "--redis-wait-timeout", "1ms"},
		"redis-master":       {"--write-token", "secret-token", "--redis-master", ""},
		"write-token":        {"--write-token", "short"},
		"redis-db":           {"--write-token", "secret-token", "--redis-db", "16"},
		"retention":          {"--write-token", "secret-token", "--retention", "1"},
		"key-prefix":         {"--write-token", "secret-token", "--key-prefix", ""},
	}
	for flag, args := range cases {
		if _, err := ParseArgs(args); err == nil || !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("%v: %v, want an error naming --%s", args, err, flag)
		}
	}
}
