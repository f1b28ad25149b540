variable "server_count" {
  type        = number
  description = "Number of servers (bootstrap_expect)."
}

variable "datacenter" {
  type        = string
  description = "Consul and Nomad datacenter."
}

variable "retry_join" {
  type        = list(string)
  description = "Consul retry_join entries (cloud auto-join strings or addresses)."
}

variable "cluster_cidr" {
  type        = string
  description = "The hosts' private network (CIDR): Consul and Nomad bind to and advertise their address in it, never another interface's."
  validation {
    condition     = can(cidrhost(var.cluster_cidr, 0))
    error_message = "cluster_cidr: an IPv4 CIDR such as 10.0.0.0/16."
  }
}

variable "ssh_authorized_key" {
  type        = string
  description = "SSH public key of the core user."
}

variable "flatcar_channel" {
  type        = string
  description = "stable, beta or alpha: the update group."
}

variable "ntp_servers" {
  type        = list(string)
  description = "NTP servers."
}

variable "consul_version" {
  type        = string
  description = "Consul sysext version."
}

variable "nomad_version" {
  type        = string
  description = "Nomad sysext version."
}

variable "consul_sysext_sha256" {
  type        = string
  description = "SHA-256 of the Consul sysext image."
}

variable "nomad_sysext_sha256" {
  type        = string
  description = "SHA-256 of the Nomad sysext image."
}

variable "sysext_base_url" {
  type        = string
  description = "Where the sysext images are downloaded from."
}

variable "snippets" {
  type        = list(string)
  description = "Extra Butane snippets for every host."
}
