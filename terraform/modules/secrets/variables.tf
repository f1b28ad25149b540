variable "datacenter" {
  type        = string
  description = "Consul datacenter (certificate names depend on it)."
}

variable "server_addresses" {
  type        = list(string)
  description = "Private IP addresses of the servers, for their certificates."
}

variable "client_count" {
  type        = number
  description = "Number of clients (each gets a Nomad client certificate)."
}
