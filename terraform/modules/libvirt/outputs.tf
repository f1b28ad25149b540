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

output "prometheus_consul_token" {
  description = "Prometheus's Consul ACL token, which reads the catalog for service discovery (PROMETHEUS_CONSUL_TOKEN for make nomad-run)."
  sensitive   = true
  value       = module.secrets.tokens["prometheus"].secret
}

output "nomad_bootstrap_token" {
  description = "Nomad's management token (NOMAD_TOKEN for operators)."
  sensitive   = true
  value       = module.secrets.tokens["nomad-bootstrap"].secret
}

output "operator_env" {
  description = "Environment for the consul and nomad CLIs from outside: the agents' certificates name them, not this address, so the TLS server names are set (write ca_cert, cli_cert and cli_key to the files named here)."
  value       = <<-EOT
    export CONSUL_HTTP_ADDR=https://${local.server_ips[0]}:8501
    export CONSUL_TLS_SERVER_NAME=server.${var.datacenter}.consul
    export CONSUL_CACERT=$PWD/ca.pem
    export NOMAD_ADDR=https://${local.server_ips[0]}:4646
    export NOMAD_TLS_SERVER_NAME=server.global.nomad
    export NOMAD_CACERT=$PWD/ca.pem
    export NOMAD_CLIENT_CERT=$PWD/cli.pem
    export NOMAD_CLIENT_KEY=$PWD/cli-key.pem
  EOT
}

output "cli_cert" {
  description = "The command line's certificate (Nomad verifies HTTPS clients): NOMAD_CLIENT_CERT."
  value       = module.secrets.certs["cli"].cert
}

output "cli_key" {
  description = "The command line's key: NOMAD_CLIENT_KEY."
  sensitive   = true
  value       = module.secrets.certs["cli"].key
}

output "consul_management_token" {
  description = "Consul's management token (CONSUL_HTTP_TOKEN for operators)."
  sensitive   = true
  value       = module.secrets.tokens["consul-bootstrap"].secret
}
