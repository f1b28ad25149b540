module "secrets" {
  source = "../secrets"

  datacenter       = var.datacenter
  server_addresses = local.server_ips
  client_count     = var.client_count
}

module "provision" {
  source = "../provision"

  server_hosts = [for d in libvirt_domain.server : d.network_interface[0].addresses[0]]
  client_hosts = [for d in libvirt_domain.client : d.network_interface[0].addresses[0]]
  secrets = {
    ca_cert           = module.secrets.ca_cert
    certs             = module.secrets.certs
    consul_gossip_key = module.secrets.consul_gossip_key
    nomad_gossip_key  = module.secrets.nomad_gossip_key
    tokens            = module.secrets.tokens
  }
}
