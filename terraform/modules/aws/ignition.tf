module "ignition" {
  source = "../ignition"

  server_count         = var.server_count
  datacenter           = var.datacenter
  retry_join           = ["provider=aws tag_key=loopstock-cluster tag_value=${var.cluster_name}"]
  cluster_cidr         = var.host_cidr
  ssh_authorized_key   = var.ssh_authorized_key
  flatcar_channel      = trimprefix(var.os_image, "flatcar-")
  ntp_servers          = var.ntp_servers
  consul_version       = var.consul_version
  nomad_version        = var.nomad_version
  consul_sysext_sha256 = var.consul_sysext_sha256
  nomad_sysext_sha256  = var.nomad_sysext_sha256
  sysext_base_url      = var.sysext_base_url
  snippets             = var.snippets
}
