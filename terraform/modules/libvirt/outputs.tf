output "server_addresses" {
  description = "Addresses of the servers on the cluster network."
  value       = local.server_ips
}

output "client_addresses" {
  description = "Addresses of the clients on the cluster network."
  value       = local.client_ips
}

output "consul_ui" {
  description = "Consul UI (HTTPS; log in with an ACL token)."
  value       = "https://${local.server_ips[0]}:8501/ui"
}

output "nomad_ui" {
  description = "Nomad UI (mutual TLS: the browser needs the cli certificate)."
  value       = "https://${local.server_ips[0]}:4646/ui"
}

output "ca_cert" {
  description = "The cluster's CA certificate, for CONSUL_CACERT and NOMAD_CACERT."
  value       = module.secrets.ca_cert
}

output "provisioned" {
  description = "Every host has its secrets."
  value       = module.provision.done
}

output "loopstock_consul_token" {
  description = "The services' Consul ACL token (CONSUL_TOKEN for make nomad-run)."
  sensitive   = true
  value       = module.secrets.tokens["loopstock"].secret
}

output "nomad_bootstrap_token" {
  description = "Nomad's management token (NOMAD_TOKEN for operators)."
  sensitive   = true
  value       = module.secrets.tokens["nomad-bootstrap"].secret
}
