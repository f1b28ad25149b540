# An example cluster on the local libvirt (Flatcar's own recommended way to
# run a local cluster): 3 servers, 2 clients, on a NAT network.
#   decompress flatcar_production_qemu_image.img into the path below, then
#   tofu init && tofu apply

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    libvirt = {
      source  = "dmacvicar/libvirt"
      version = "~> 0.7.6"
    }
  }
}

provider "libvirt" {
  uri = "qemu:///system"
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

module "loopstock" {
  source = "../../modules/libvirt"

  cluster_name         = "loopstock-local"
  server_count         = 3
  client_count         = 2
  os_image             = "/var/lib/libvirt/images/flatcar_production_qemu_image.img"
  ssh_authorized_key   = var.ssh_authorized_key
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
