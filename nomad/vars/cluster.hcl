# The Flatcar cluster: exec driver, binaries from release tarballs, Redis
# from the official Docker image. The operator's values are not here: Nomad
# applies var files after NOMAD_VAR_*, so a value here would hide theirs.
# Export NOMAD_VAR_release_url, _release_sha256, _nsq_url, _nsq_sha256,
# _prometheus_url, _prometheus_sha256, _grafana_url, _grafana_sha256 and
# _redis_node (and NOMAD_VAR_counts to change the counts); see README.md.
datacenters      = ["dc1"]
driver           = "exec"
redis_driver     = "docker"
consul_http_addr = "127.0.0.1:8501"
consul_tls       = true
