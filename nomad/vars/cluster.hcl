# The Flatcar cluster: exec driver, binaries from release tarballs, Redis
# from the official Docker image, Consul over HTTPS with ACLs (the
# variables' defaults are these values too, so a job run by hand needs no
# var file). Each job receives only the values of the variables it
# declares. The operator's values (URLs, checksums, the Redis node, counts)
# are not here: they belong to a release and a cluster, not to the
# repository; they come from NOMAD_VAR_* (README.md, "Cluster").
datacenters      = ["dc1"]
driver           = "exec"
redis_replicated = true
redis_driver     = "docker"
consul_http_addr = "127.0.0.1:8501"
consul_tls       = true
