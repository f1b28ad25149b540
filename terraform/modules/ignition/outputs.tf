output "servers" {
  description = "Ignition of each server."
  value       = data.ct_config.server[*].rendered
}

output "client" {
  description = "Ignition of a client (every client is alike)."
  value       = data.ct_config.client.rendered
}
