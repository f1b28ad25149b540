package integergen

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	o, err := ParseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Interval != 100*time.Millisecond || o.Min != 1 || o.Max != 10000 || o.OnCoordinationLoss != OnLossPause || o.Topic != "integers" {
		t.Fatalf("defaults %+v", o)
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("INTEGER_GEN_INTERVAL", "250ms")
	t.Setenv("INTEGER_GEN_MAX", "500")
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.1:8500")
	o, err := ParseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Interval != 250*time.Millisecond || o.Max != 500 || o.ConsulAddr != "10.0.0.1:8500" {
		t.Fatalf("%+v", o)
	}
	if o, _ := ParseArgs([]string{"--interval", "1s"}); o.Interval != time.Second {
		t.Errorf("a flag must win over the environment: %v", o.Interval)
	}
}

func TestInvalidFlagsNameTheFlag(t *testing.T) {
	cases := []struct {
		flag string // what the message must name
		args []string
	}{
		{"interval", []string{"--interval", "0s"}},
		{"interval", []string{"--interval", "1500us"}},
		{"interval", []string{"--interval", "soon"}},
		{"min", []string{"--min", "-1"}},
		{"max", []string{"--min", "10", "--max", "5"}},
		{"topic", []string{"--topic", "no spaces"}},
		{"max-generators", []string{"--max", "10", "--max-generators", "11"}},
		{"on-coordination-loss", []string{"--on-coordination-loss", "ignore"}},
		{"lease-ahead", []string{"--lease-ahead", "10ms"}},
		{"batch-max", []string{"--batch-max", "0"}},
		{"nsqd-copies", []string{"--nsqd-copies", "0"}},
		{"nsqd-copies", []string{"--nsqd-copies", "4"}},
		{"log-level", []string{"--log-level", "loud"}},
		{"log-format", []string{"--log-format", "xml"}},
		{"http-addr", []string{"--http-addr", "nowhere"}},
		{"consul-addr", []string{"--consul-addr", "localhost"}},
		{"colour", []string{"--colour", "red"}},
		{"interval=5s", []string{"interval=5s"}},
	}
	for _, c := range cases {
		_, err := ParseArgs(c.args)
		if err == nil {
			t.Errorf("%v accepted", c.args)
			continue
		}
		if !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%v: %q does not name %s", c.args, err, c.flag)
		}
	}
}
