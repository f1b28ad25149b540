module "secrets" {
  source = "../secrets"

  datacenter       = var.datacenter
  server_addresses = aws_instance.server[*].private_ip
  client_count     = var.client_count
}

module "provision" {
  source = "../provision"

  server_hosts = aws_instance.server[*].public_ip
  client_hosts = aws_instance.client[*].public_ip
  secrets = {
    ca_cert           = module.secrets.ca_cert
    certs             = module.secrets.certs
    consul_gossip_key = module.secrets.consul_gossip_key
    nomad_gossip_key  = module.secrets.nomad_gossip_key
    tokens            = module.secrets.tokens
  }
}
