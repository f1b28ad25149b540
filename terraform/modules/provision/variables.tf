variable "server_hosts" {
  type        = list(string)
  description = "Addresses Terraform reaches the servers at over SSH, in server order."
}

variable "client_hosts" {
  type        = list(string)
  description = "Addresses Terraform reaches the clients at over SSH, in client order."
}

variable "secrets" {
  type = object({
    ca_cert           = string
    certs             = map(object({ cert = string, key = string }))
    consul_gossip_key = string
    nomad_gossip_key  = string
    tokens            = map(object({ accessor = string, secret = string }))
  })
  sensitive   = true
  description = "The outputs of the secrets module."
}
