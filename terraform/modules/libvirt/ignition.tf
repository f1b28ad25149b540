locals {
  server_ips = [for i in range(var.server_count) : cidrhost(var.network_cidr, 10 + i)]
  client_ips = [for i in range(var.client_count) : cidrhost(var.network_cidr, 20 + i)]
}

module "ignition" {
  source = "../ignition"

  server_count         = var.server_count
  datacenter           = var.datacenter
  retry_join           = local.server_ips
  cluster_cidr         = var.network_cidr
  ssh_authorized_key   = var.ssh_authorized_key
  flatcar_channel      = var.flatcar_channel
  ntp_servers          = var.ntp_servers
  consul_version       = var.consul_version
  nomad_version        = var.nomad_version
  consul_sysext_sha256 = var.consul_sysext_sha256
  nomad_sysext_sha256  = var.nomad_sysext_sha256
  sysext_base_url      = var.sysext_base_url
  snippets             = var.snippets
}

# Ignition reaches the VMs through QEMU's fw_cfg, as Flatcar documents for
# libvirt: nothing is served over the network.
resource "libvirt_ignition" "server" {
  count   = var.server_count
  name    = "${var.cluster_name}-server-${count.index}.ign"
  pool    = var.pool
  content = module.ignition.servers[count.index]
}

resource "libvirt_ignition" "client" {
  count   = var.client_count
  name    = "${var.cluster_name}-client-${count.index}.ign"
  pool    = var.pool
  content = module.ignition.client
}
