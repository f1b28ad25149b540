# An example cluster on AWS: 3 servers, 2 clients.
#   tofu init && tofu apply -var 'ssh_authorized_key=…' -var 'ssh_cidrs=["203.0.113.7/32"]'
# Keep the state in an encrypted backend with restricted access: it holds
# the cluster's CA key, gossip keys and ACL tokens.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type        = string
  default     = "eu-central-1"
  description = "AWS region."
}

# From the Flatcar sysext bakery's published checksums of the releases
# consul-1.21.4 and nomad-1.10.0 (docs/provisioning.md shows how to read
# them); Ignition refuses an image with another hash.
variable "consul_sysext_sha256" {
  type        = string
  description = "SHA-256 of consul-1.21.4-x86-64.raw, from the bakery's SHA256SUMS."
}

variable "nomad_sysext_sha256" {
  type        = string
  description = "SHA-256 of nomad-1.10.0-x86-64.raw, from the bakery's SHA256SUMS."
}

variable "ssh_authorized_key" {
  type        = string
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa operator@example"
  description = "Your SSH public key (its private key in your ssh-agent)."
}

variable "ssh_cidrs" {
  type        = list(string)
  default     = ["203.0.113.7/32"]
  description = "Your address or VPN range."
}

module "loopstock" {
  source = "../../modules/aws"

  cluster_name         = "loopstock-demo"
  server_count         = 3
  client_count         = 2
  os_image             = "flatcar-stable"
  ssh_authorized_key   = var.ssh_authorized_key
  ssh_cidrs            = var.ssh_cidrs
  consul_version       = "1.21.4"
  nomad_version        = "1.10.0"
  consul_sysext_sha256 = var.consul_sysext_sha256
  nomad_sysext_sha256  = var.nomad_sysext_sha256
}

output "consul_ui" {
  value = module.loopstock.consul_ui
}

output "nomad_ui" {
  value = module.loopstock.nomad_ui
}

output "servers" {
  value = module.loopstock.server_addresses
}

output "nomad_bootstrap_token" {
  value     = module.loopstock.nomad_bootstrap_token
  sensitive = true
}

output "loopstock_consul_token" {
  value     = module.loopstock.loopstock_consul_token
  sensitive = true
}

output "prometheus_consul_token" {
  value     = module.loopstock.prometheus_consul_token
  sensitive = true
}

output "operator_env" {
  value = module.loopstock.operator_env
}

output "ca_cert" {
  value = module.loopstock.ca_cert
}

output "cli_cert" {
  value = module.loopstock.cli_cert
}

output "cli_key" {
  value     = module.loopstock.cli_key
  sensitive = true
}

output "consul_management_token" {
  value     = module.loopstock.consul_management_token
  sensitive = true
}
