package flatcar

import (
	"encoding/json"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// Cluster holds the inputs of terraform/modules/ignition, one field per
// variable of that module, so the Vagrant cluster, the cluster test and the
// Terraform platforms render from the same values the same way.
type Cluster struct {
	Datacenter       string
	ServerCount      int
	RetryJoin        []string // Consul retry_join entries: addresses or cloud auto-join strings
	ClusterCIDR      string   // the private network the agents bind to and advertise on
	SSHAuthorizedKey string
	FlatcarChannel   string
	NTPServers       []string
	ConsulVersion    string
	NomadVersion     string
	ConsulSHA256     string
	NomadSHA256      string
	SysextBaseURL    string
}

// Vars are the template variables of one host, as the Terraform module
// passes them to templatefile: role "server" or "client", and whether this
// host bootstraps the ACLs (the first server).
func (c Cluster) Vars(role string, bootstrap bool) map[string]cty.Value {
	join, _ := json.Marshal(c.RetryJoin)
	return map[string]cty.Value{
		"datacenter":           cty.StringVal(c.Datacenter),
		"server_count":         cty.NumberIntVal(int64(c.ServerCount)),
		"retry_join":           cty.StringVal(string(join)),
		"cluster_cidr":         cty.StringVal(c.ClusterCIDR),
		"ssh_authorized_key":   cty.StringVal(c.SSHAuthorizedKey),
		"flatcar_channel":      cty.StringVal(c.FlatcarChannel),
		"ntp_servers":          cty.StringVal(strings.Join(c.NTPServers, " ")),
		"consul_version":       cty.StringVal(c.ConsulVersion),
		"nomad_version":        cty.StringVal(c.NomadVersion),
		"consul_sysext_sha256": cty.StringVal(c.ConsulSHA256),
		"nomad_sysext_sha256":  cty.StringVal(c.NomadSHA256),
		"sysext_base_url":      cty.StringVal(c.SysextBaseURL),
		"role":                 cty.StringVal(role),
		"bootstrap":            cty.BoolVal(bootstrap),
	}
}

// Server renders server i's Ignition from the Butane sources in dir.
func (c Cluster) Server(dir string, i int) ([]byte, error) {
	return Node(dir, "server", c.Vars("server", i == 0))
}

// Client renders a client's Ignition (every client is alike).
func (c Cluster) Client(dir string) ([]byte, error) {
	return Node(dir, "client", c.Vars("client", false))
}
