# A single Linux host running Nomad and Consul dev agents, no Docker:
# make nomad-run adds bin_dir=<repo>/.bin, so the tasks run the binaries
# that make build and make tools produced, and redis_node= the dev agent's
# node name. Each job receives only the values of the variables it
# declares; README.md, "Dev agent by hand", sets the same values with
# NOMAD_VAR_* exports.
datacenters      = ["dc1"]
driver           = "raw_exec"
redis_replicated = false
distinct_clients = false
redis_driver     = "exec"
consul_http_addr = "127.0.0.1:8500"
consul_tls       = false
counts = {
  nsqlookupd  = 1
  integer_gen = 2
  averager    = 2
  api         = 2
}
