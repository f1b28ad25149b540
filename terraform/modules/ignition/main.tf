# Renders the Butane sources in ignition/ into Ignition with poseidon/ct,
# strictly: a Butane warning is an error. The same sources and variables as
# the CI check (platform/ignition/ignition_test.go).

locals {
  dir = "${path.module}/../../../ignition"
  vars = {
    datacenter           = var.datacenter
    server_count         = var.server_count
    retry_join           = jsonencode(var.retry_join)
    cluster_cidr         = var.cluster_cidr
    ssh_authorized_key   = var.ssh_authorized_key
    flatcar_channel      = var.flatcar_channel
    ntp_servers          = join(" ", var.ntp_servers)
    consul_version       = var.consul_version
    nomad_version        = var.nomad_version
    consul_sysext_sha256 = var.consul_sysext_sha256
    nomad_sysext_sha256  = var.nomad_sysext_sha256
    sysext_base_url      = var.sysext_base_url
  }
  shared = ["ssh", "time", "journald", "sysctl", "updates", "agents"]
}

data "ct_config" "server" {
  count  = var.server_count
  strict = true
  content = templatefile("${local.dir}/server.yaml", merge(local.vars, {
    role = "server", bootstrap = count.index == 0
  }))
  snippets = concat([for s in local.shared : templatefile("${local.dir}/snippets/${s}.yaml", merge(local.vars, {
    role = "server", bootstrap = count.index == 0
  }))], var.snippets)
}

data "ct_config" "client" {
  strict = true
  content = templatefile("${local.dir}/client.yaml", merge(local.vars, {
    role = "client", bootstrap = false
  }))
  snippets = concat([for s in local.shared : templatefile("${local.dir}/snippets/${s}.yaml", merge(local.vars, {
    role = "client", bootstrap = false
  }))], var.snippets)
}
