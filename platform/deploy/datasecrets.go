package deploy

import (
	"encoding/json"
	"fmt"

	"github.com/loopstock/loopstock/internal/redisacl"
	"github.com/loopstock/loopstock/services/nsqdgate"
)

// DataSecrets are the items of the data plane's mutual TLS (docs/design.md,
// "Trust"), written on a cluster (consul_tls: Consul's Connect CA issues
// the certificates) besides Secrets: each service's secret for nsqd's
// AUTH, nsqd-gate's grants, and the Redis ACL users of the store and of
// its Sentinels.
var DataSecrets = map[string][]string{
	"integer-gen":        {"nsq_secret"},
	"integeraverage-cal": {"nsq_secret"},
	"nsqd":               {"nsq_grants"},
	"redis":              {"redis_acl", "redis_replica_password"},
	"redis-sentinel":     {"sentinel_users", "redis_sentinel_password"},
}

// AuditService is the identity of an auditor's tap: it may read stats and
// subscribe to its own channel, "audit", which takes nothing from the
// averager's (each NSQ channel gets every message).
const AuditService = "loopstock-audit"

// AuditChannel is the auditor's channel.
const AuditChannel = "audit"

// generatedDataSecrets are the random secrets the data plane's items are
// made of, each kept in .data/<name with dashes> like the others, and
// where Nomad holds it in the clear (to take it back when .data lacks it;
// the others are then made anew, a rotation).
var generatedDataSecrets = map[string]struct{ job, item string }{
	"nsq_secret_integer_gen":        {"integer-gen", "nsq_secret"},
	"nsq_secret_integeraverage_cal": {"integeraverage-cal", "nsq_secret"},
	"nsq_secret_audit":              {},
	"redis_health_password":         {},
	"redis_replica_password":        {"redis", "redis_replica_password"},
	"redis_sentinel_password":       {"redis-sentinel", "redis_sentinel_password"},
}

// dataSecretValues derives every data-plane item from the generated
// secrets (values holds them, and redis_password: integer-api's Redis
// user's). Per job, an item's value is values[job+"/"+item] when set, else
// values[item].
func dataSecretValues(values map[string]string) error {
	values["integer-gen/nsq_secret"] = values["nsq_secret_integer_gen"]
	values["integeraverage-cal/nsq_secret"] = values["nsq_secret_integeraverage_cal"]
	grants := nsqdgate.Grants{Grants: []nsqdgate.Grant{
		{Service: "integer-gen", Secret: values["nsq_secret_integer_gen"], Publish: []string{"integers"}},
		{Service: "integeraverage-cal", Secret: values["nsq_secret_integeraverage_cal"],
			Subscribe: []nsqdgate.Subscription{{Topic: "integers", Channel: "averager"}}, Publish: []string{"integers-dead-letter"}, Stats: true},
		{Service: AuditService, Secret: values["nsq_secret_audit"],
			Subscribe: []nsqdgate.Subscription{{Topic: "integers", Channel: AuditChannel}}, Stats: true},
	}}
	b, err := json.MarshalIndent(grants, "", "  ")
	if err != nil {
		return err
	}
	if _, err := nsqdgate.ParseGrants(b); err != nil {
		return fmt.Errorf("nsqd-gate's grants: %w", err)
	}
	values["nsq_grants"] = string(b)
	passwords := map[string]string{
		redisacl.API: values["redis_password"], redisacl.Health: values["redis_health_password"],
		redisacl.Replica: values["redis_replica_password"], redisacl.Sentinel: values["redis_sentinel_password"],
	}
	if values["redis_acl"], err = redisacl.File("loopstock", passwords); err != nil {
		return err
	}
	values["sentinel_users"], err = redisacl.SentinelUsers(passwords)
	return err
}
