package averager

import (
	"strings"
	"testing"
	"time"
)

var token = []string{"--write-token", "secret-token"}

func TestDefaults(t *testing.T) {
	o, err := ParseArgs(token)
	if err != nil {
		t.Fatal(err)
	}
	if o.Window != 5*time.Second || o.Channel != "averager" || o.DeadLetterTopic != "integers-dead-letter" || o.LookupdService != "nsqlookupd" {
		t.Fatalf("defaults %+v", o)
	}
}

func TestWriteTokenIsRequired(t *testing.T) {
	if _, err := ParseArgs(nil); err == nil || !strings.Contains(err.Error(), "--write-token") {
		t.Fatalf("no token: %v", err)
	}
	t.Setenv("INTEGERAVERAGE_CAL_WRITE_TOKEN", "from-the-environment")
	if o, err := ParseArgs(nil); err != nil || o.WriteToken != "from-the-environment" {
		t.Fatalf("token from the environment: %v %v", o.WriteToken, err)
	}
}

func TestInvalidFlagsNameTheFlag(t *testing.T) {
	cases := map[string][]string{
		"window":            {"--window", "5ms"},
		"grace":             {"--grace", "-1s"},
		"max-lateness":      {"--grace", "2s", "--max-lateness", "1s"},
		"channel":           {"--channel", "a/b"},
		"dead-letter-topic": {"--dead-letter-topic", "integers"},
		"max-in-flight":     {"--max-in-flight", "0"},
		"session-ttl":       {"--session-ttl", "1s"},
		"api-service":       {"--api-service", ""},
		// go-nsq refuses more than 5m: a consumer could never start.
		"lookupd-poll-interval": {"--lookupd-poll-interval", "10m"},
	}
	for flag, args := range cases {
		_, err := ParseArgs(append(args, token...))
		if err == nil || !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("%v: %v, want an error naming --%s", args, err, flag)
		}
	}
}
