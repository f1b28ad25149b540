output "done" {
  description = "Depends on every host having its secrets."
  value       = [for r in null_resource.secrets : r.id]
}
