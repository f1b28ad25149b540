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
	cases := map[string][]string{
		"write-token": {"--write-token", "short"},
		"redis-db":    {"--write-token", "secret-token", "--redis-db", "16"},
		"retention":   {"--write-token", "secret-token", "--retention", "1"},
		"key-prefix":  {"--write-token", "secret-token", "--key-prefix", ""},
	}
	for flag, args := range cases {
		if _, err := ParseArgs(args); err == nil || !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("%v: %v, want an error naming --%s", args, err, flag)
		}
	}
}
