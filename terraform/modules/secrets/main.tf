# Every secret of a cluster, generated here: a CA, the Consul and Nomad
# certificates, the gossip keys, the ACL bootstrap and agent tokens. They
# live in Terraform state (keep it in an encrypted, access-controlled
# backend) and reach the hosts over SSH, never through user data.

resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem       = tls_private_key.ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = 87600
  allowed_uses          = ["cert_signing", "crl_signing", "digital_signature"]
  subject {
    common_name  = "loopstock ${var.datacenter} CA"
    organization = "loopstock"
  }
}

locals {
  # One certificate per agent, from the cluster's CA (what every client of
  # an agent verifies): Consul and Nomad servers and clients, and one for
  # the command line (Nomad verifies HTTPS clients).
  certs = merge(
    { for i, ip in var.server_addresses : "consul-server-${i}" => {
      cn = "server.${var.datacenter}.consul", dns = ["server.${var.datacenter}.consul", "localhost"], ips = [ip, "127.0.0.1"]
    } },
    { for i, ip in var.server_addresses : "nomad-server-${i}" => {
      cn = "server.global.nomad", dns = ["server.global.nomad", "localhost"], ips = [ip, "127.0.0.1"]
    } },
    { for i in range(var.client_count) : "consul-client-${i}" => {
      cn = "client.${var.datacenter}.consul", dns = ["client.${var.datacenter}.consul", "localhost"], ips = ["127.0.0.1"]
    } },
    { for i in range(var.client_count) : "nomad-client-${i}" => {
      cn = "client.global.nomad", dns = ["client.global.nomad", "localhost"], ips = ["127.0.0.1"]
    } },
    { "cli" = { cn = "cli.global.nomad", dns = ["cli.global.nomad"], ips = [] } },
  )
}

resource "tls_private_key" "agent" {
  for_each    = local.certs
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "agent" {
  for_each        = local.certs
  private_key_pem = tls_private_key.agent[each.key].private_key_pem
  dns_names       = each.value.dns
  ip_addresses    = each.value.ips
  subject {
    common_name = each.value.cn
  }
}

resource "tls_locally_signed_cert" "agent" {
  for_each              = local.certs
  cert_request_pem      = tls_cert_request.agent[each.key].cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = 8760
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

resource "random_bytes" "consul_gossip" {
  length = 32
}

resource "random_bytes" "nomad_gossip" {
  length = 32
}

# Consul ACL tokens, accessor and secret chosen here so the first server can
# create them with these values and Terraform can hand them out (the same
# names as platform/flatcar.ConsulTokens). Nomad's management token is
# chosen here too; Nomad makes its other tokens itself.
resource "random_uuid" "accessor" {
  for_each = toset(["agent", "default", "nomad", "maintenance", "loopstock", "prometheus"])
}

resource "random_uuid" "secret" {
  for_each = toset(["agent", "default", "nomad", "maintenance", "loopstock", "prometheus", "consul-bootstrap", "nomad-bootstrap"])
}
