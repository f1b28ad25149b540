# The Flatcar cluster: exec driver, binaries from the release tarball that
# make dist builds (set release_url and release_sha256 from its SHA256SUMS),
# NSQ from its release tarball, Redis from the official Docker image.
datacenters      = ["dc1"]
driver           = "exec"
redis_driver     = "docker"
consul_http_addr = "127.0.0.1:8501"
consul_tls       = true
release_url      = "http://artifacts.service.consul/loopstock/loopstock_0.1.0_linux_amd64.tar.gz"
release_sha256   = "0000000000000000000000000000000000000000000000000000000000000000"
nsq_url          = "http://artifacts.service.consul/nsq/nsq-1.3.0.linux-amd64.go1.21.5.tar.gz"
nsq_sha256       = "0000000000000000000000000000000000000000000000000000000000000000"
counts = {
  nsqlookupd  = 3
  integer_gen = 2
  averager    = 2
  api         = 2
}
