// Package redisacl is who may do what on the Redis store: one ACL user
// per client, each with the commands and keys it needs and nothing else
// (no CONFIG, FLUSHALL, MODULE, DEBUG or KEYS for anyone), and the
// default user off. The deploy renders the same file into the Redis job's
// Nomad variable that the tests give their redis-server (--aclfile).
package redisacl

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// The store's users.
const (
	API      = "integer-api" // reads and writes windows
	Health   = "health"      // the Consul check: PING
	Replica  = "replica"     // a replica's link to its primary; the start scripts' ROLE
	Sentinel = "sentinel"    // the Sentinels' monitoring and failover
)

// Users are every user, in the file's order.
var Users = []string{API, Health, Replica, Sentinel}

// rules are each user's permissions; {prefix} is integer-api's
// --key-prefix. The Sentinel's are those of Redis's Sentinel guide.
var rules = map[string]string{
	// Lua runs with the caller's permissions: the commands of put.lua are
	// here too (a test of the store under this user keeps the two equal).
	API: "resetkeys ~{prefix}:* resetchannels -@all +ping +role +info +wait +select +client|setname " +
		"+evalsha +script|load +zrevrange +zrevrangebyscore +hmget " +
		"+get +set +del +exists +hget +hset +hincrby +zadd +zcard +zrange +zremrangebyrank",
	Health:  "resetkeys resetchannels -@all +ping",
	Replica: "resetkeys resetchannels -@all +psync +replconf +ping +role",
	Sentinel: "resetkeys resetchannels &__sentinel__:hello -@all +multi +slaveof +replicaof +ping +exec +subscribe " +
		"+config|rewrite +role +publish +info +client|setname +client|kill +script|kill",
}

// File is the aclfile: the default user off and each user with the
// SHA-256 of its password (the file holds no password). passwords must
// name every user.
func File(prefix string, passwords map[string]string) (string, error) {
	var b strings.Builder
	// The default user is off: no connection can be it, and every client
	// must AUTH as its own user. Its rules stay whole all the same: Redis
	// replays its AOF at start as the default user and re-checks each
	// transaction against its rules, so a default user without them loses
	// every merged window at a restart (TestTheStoreKeepsItsWindowsAcross-
	// ARestartWithACLs).
	b.WriteString("user default off resetpass ~* &* +@all\n")
	for _, u := range Users {
		pw := passwords[u]
		if len(pw) < 16 {
			return "", fmt.Errorf("redis user %s: password missing or shorter than 16 characters", u)
		}
		sum := sha256.Sum256([]byte(pw))
		fmt.Fprintf(&b, "user %s on #%s %s\n", u, hex.EncodeToString(sum[:]), strings.ReplaceAll(rules[u], "{prefix}", prefix))
	}
	for u := range passwords {
		if !slices.Contains(Users, u) {
			return "", fmt.Errorf("redis user %s: not a user of the store (%s)", u, strings.Join(Users, ", "))
		}
	}
	return b.String(), nil
}

// sentinelRules are the users of the Sentinels: integer-api asks where
// the primary is and follows a failover; the Redis and Sentinel start
// scripts ask the same; the Sentinels talk to each other as Sentinel.
var sentinelRules = map[string]string{
	API: "-@all +ping +role +client|setname +sentinel|get-master-addr-by-name +sentinel|sentinels " +
		"+sentinel|master +sentinel|replicas +subscribe +psubscribe +unsubscribe +punsubscribe &*",
	Health:   "-@all +ping",
	Replica:  "-@all +ping +sentinel|get-master-addr-by-name",
	Sentinel: "+@all &*",
}

// SentinelUsers is the Sentinels' aclfile. An aclfile, not user lines in
// their config: a Sentinel rewrites its config with every user it has, and
// refuses to start on a user defined twice.
func SentinelUsers(passwords map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("user default off resetkeys resetchannels -@all\n")
	for _, u := range Users {
		pw := passwords[u]
		if len(pw) < 16 {
			return "", fmt.Errorf("sentinel user %s: password missing or shorter than 16 characters", u)
		}
		sum := sha256.Sum256([]byte(pw))
		fmt.Fprintf(&b, "user %s on #%s %s\n", u, hex.EncodeToString(sum[:]), sentinelRules[u])
	}
	return b.String(), nil
}
