package flatcar

// The Vagrant cluster (Vagrantfile, cmd/vagrant-config): one server and the
// clients on the private network 192.168.56.0/24. Every VirtualBox VM also
// has the NAT interface 10.0.2.15, the same on all of them, so the agents
// must bind to and advertise the private address (ClusterCIDR).
const (
	VagrantCIDR     = "192.168.56.0/24"
	VagrantServerIP = "192.168.56.10"
)

// VagrantCluster is the input of every Vagrant VM's Ignition: the sysext
// images are served by the host at sysextBaseURL with the given hashes.
func VagrantCluster(sshKey, sysextBaseURL, consulVersion, consulSHA256, nomadVersion, nomadSHA256 string) Cluster {
	return Cluster{
		Datacenter:       "dc1",
		ServerCount:      1,
		RetryJoin:        []string{VagrantServerIP},
		ClusterCIDR:      VagrantCIDR,
		SSHAuthorizedKey: sshKey,
		// The box's channel: the first Flatcar release line whose
		// VirtualBox image reads Ignition (scripts/vagrant-assets).
		FlatcarChannel: "beta",
		NTPServers:     []string{"0.flatcar.pool.ntp.org", "1.flatcar.pool.ntp.org"},
		ConsulVersion:  consulVersion,
		NomadVersion:   nomadVersion,
		ConsulSHA256:   consulSHA256,
		NomadSHA256:    nomadSHA256,
		SysextBaseURL:  sysextBaseURL,
	}
}
