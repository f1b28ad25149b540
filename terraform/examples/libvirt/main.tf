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
  consul_version       = "1.20.2"
  nomad_version        = "1.9.5"
  consul_sysext_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
  nomad_sysext_sha256  = "0000000000000000000000000000000000000000000000000000000000000000"
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
