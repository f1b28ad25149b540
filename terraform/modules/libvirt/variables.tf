# The same names on every platform (see ../aws/variables.tf).

variable "cluster_name" {
  type        = string
  description = "Unique name of the cluster; prefixes every resource and tags them."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.cluster_name))
    error_message = "cluster_name: 2-31 lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "server_count" {
  type        = number
  default     = 3
  description = "Consul + Nomad servers: 3 (or 5) for a quorum that survives a failure."
  validation {
    condition     = contains([1, 3, 5], var.server_count)
    error_message = "server_count: 1 (no fault tolerance), 3 or 5."
  }
}

variable "client_count" {
  type        = number
  default     = 2
  description = "Consul + Nomad clients that run the jobs."
  validation {
    condition     = var.client_count >= 1 && var.client_count <= 50
    error_message = "client_count: 1 to 50."
  }
}

variable "os_image" {
  type        = string
  description = "Path (or URL) of the Flatcar QEMU image, flatcar_production_qemu_image.img, downloaded and decompressed beforehand."
  validation {
    condition     = length(var.os_image) > 0
    error_message = "os_image: the path of the Flatcar QEMU image."
  }
}

variable "flatcar_channel" {
  type        = string
  default     = "stable"
  description = "Update channel of the image: stable, beta or alpha."
  validation {
    condition     = contains(["stable", "beta", "alpha"], var.flatcar_channel)
    error_message = "flatcar_channel: stable, beta or alpha."
  }
}

variable "ssh_authorized_key" {
  type        = string
  description = "SSH public key for the core user (Terraform also uses it to copy the secrets: keep the private key in your ssh-agent)."
  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) ", var.ssh_authorized_key))
    error_message = "ssh_authorized_key: an OpenSSH public key."
  }
}

variable "datacenter" {
  type        = string
  default     = "dc1"
  description = "Consul and Nomad datacenter."
}

# The versions default to ones the Flatcar sysext bakery publishes (its
# release_build_versions.txt builds them); the SHA-256 of each image comes from
# the bakery's SHA256SUMS of that release (docs/provisioning.md).
variable "consul_version" {
  type        = string
  default     = "1.21.4"
  description = "Consul version of the sysext image (consul-<version>-x86-64.raw in the bakery)."
}

variable "nomad_version" {
  type        = string
  default     = "1.10.0"
  description = "Nomad version of the sysext image (nomad-<version>-x86-64.raw in the bakery)."
}

variable "consul_sysext_sha256" {
  type        = string
  description = "SHA-256 of the Consul sysext image (pinned: Ignition refuses any other)."
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.consul_sysext_sha256)) && !can(regex("^0+$", var.consul_sysext_sha256))
    error_message = "consul_sysext_sha256: the 64 hex digits of the image's line in the bakery's SHA256SUMS."
  }
}

variable "nomad_sysext_sha256" {
  type        = string
  description = "SHA-256 of the Nomad sysext image."
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.nomad_sysext_sha256)) && !can(regex("^0+$", var.nomad_sysext_sha256))
    error_message = "nomad_sysext_sha256: the 64 hex digits of the image's line in the bakery's SHA256SUMS."
  }
}

variable "sysext_base_url" {
  type        = string
  default     = "https://extensions.flatcar.org/extensions"
  description = "Where the sysext images are downloaded from: the bakery's hub serves every published image under one path."
}

variable "ntp_servers" {
  type        = list(string)
  default     = ["0.flatcar.pool.ntp.org", "1.flatcar.pool.ntp.org"]
  description = "NTP servers."
}

variable "snippets" {
  type        = list(string)
  default     = []
  description = "Extra Butane snippets merged into every host's config."
}

# libvirt only.

variable "pool" {
  type        = string
  default     = "default"
  description = "libvirt storage pool for the disks."
}

variable "network_cidr" {
  type        = string
  default     = "10.17.3.0/24"
  description = "The cluster's NAT network; servers get .10 onwards, clients .20 onwards."
  validation {
    condition     = can(cidrhost(var.network_cidr, 64))
    error_message = "network_cidr: an IPv4 CIDR of at least /25."
  }
}

variable "server_memory" {
  type        = number
  default     = 2048
  description = "Memory of a server, MiB."
}

variable "client_memory" {
  type        = number
  default     = 4096
  description = "Memory of a client, MiB."
}

variable "vcpus" {
  type        = number
  default     = 2
  description = "Virtual CPUs per host."
}

variable "disk_size" {
  type        = number
  default     = 20
  description = "Disk size in GiB."
}
