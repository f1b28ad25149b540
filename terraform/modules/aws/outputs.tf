output "server_addresses" {
  description = "Public addresses of the servers."
  value       = aws_instance.server[*].public_ip
}

output "client_addresses" {
  description = "Public addresses of the clients."
  value       = aws_instance.client[*].public_ip
}

output "consul_ui" {
  description = "Consul UI (HTTPS; reachable from ssh_cidrs; log in with an ACL token)."
  value       = "https://${aws_instance.server[0].public_ip}:8501/ui"
}

output "nomad_ui" {
  description = "Nomad UI (mutual TLS: the browser needs the cli certificate)."
  value       = "https://${aws_instance.server[0].public_ip}:4646/ui"
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
