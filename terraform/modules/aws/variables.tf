# The same names on every platform (see ../libvirt/variables.tf).

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
  default     = "flatcar-stable"
  description = "Flatcar channel as flatcar-stable, flatcar-beta or flatcar-alpha (the AMI is looked up by channel)."
  validation {
    condition     = contains(["flatcar-stable", "flatcar-beta", "flatcar-alpha"], var.os_image)
    error_message = "os_image: flatcar-stable, flatcar-beta or flatcar-alpha."
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
  default     = ["169.254.169.123"]
  description = "NTP servers (on AWS, the Amazon Time Sync Service)."
}

variable "ssh_cidrs" {
  type        = list(string)
  description = "Networks allowed to SSH to the hosts and reach the Consul and Nomad UIs (your address, a VPN)."
  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "ssh_cidrs: CIDR blocks, and not 0.0.0.0/0."
  }
}

variable "snippets" {
  type        = list(string)
  default     = []
  description = "Extra Butane snippets merged into every host's config."
}

# AWS only.

variable "server_type" {
  type        = string
  default     = "t3.small"
  description = "EC2 instance type of the servers."
}

variable "client_type" {
  type        = string
  default     = "t3.medium"
  description = "EC2 instance type of the clients."
}

variable "disk_size" {
  type        = number
  default     = 30
  description = "Root disk size in GiB."
}

variable "host_cidr" {
  type        = string
  default     = "10.0.0.0/16"
  description = "CIDR of the VPC."
}
