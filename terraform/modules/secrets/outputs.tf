output "ca_cert" {
  value = tls_self_signed_cert.ca.cert_pem
}

output "certs" {
  description = "Certificate and key per agent (consul-server-N, nomad-server-N, consul-client-N, nomad-client-N, cli)."
  sensitive   = true
  value = { for k, v in tls_locally_signed_cert.agent : k => {
    cert = v.cert_pem
    key  = tls_private_key.agent[k].private_key_pem
  } }
}

output "consul_gossip_key" {
  sensitive = true
  value     = random_bytes.consul_gossip.base64
}

output "nomad_gossip_key" {
  sensitive = true
  value     = random_bytes.nomad_gossip.base64
}

output "tokens" {
  description = "ACL token accessors and secrets by name."
  sensitive   = true
  value = {
    for name, s in random_uuid.secret : name => {
      accessor = try(random_uuid.accessor[name].result, "")
      secret   = s.result
    }
  }
}
