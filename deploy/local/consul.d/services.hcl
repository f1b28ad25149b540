# The infrastructure of the local stack, registered by the Consul agent with
# health checks. loopstock's own services register themselves.

enable_local_script_checks = true
# The stack talks to nothing beyond this machine.
disable_update_check = true

services {
  name = "nsqlookupd"
  id   = "nsqlookupd-local"
  port = 4161 # HTTP: what consumers and nsqadmin use
  meta = { tcp_port = "4160" }
  check {
    name     = "nsqlookupd ping"
    http     = "http://127.0.0.1:4161/ping"
    interval = "2s"
    timeout  = "1s"
  }
}

services {
  name = "nsqd"
  id   = "nsqd-local"
  port = 4150 # TCP: what producers use
  meta = { http_port = "4151" }
  check {
    name     = "nsqd ping"
    http     = "http://127.0.0.1:4151/ping"
    interval = "2s"
    timeout  = "1s"
  }
}

services {
  name = "nsqadmin"
  id   = "nsqadmin-local"
  port = 4171
  check {
    name     = "nsqadmin ping"
    http     = "http://127.0.0.1:4171/ping"
    interval = "5s"
    timeout  = "1s"
  }
}

services {
  name = "redis"
  id   = "redis-local"
  port = 6379
  check {
    # A PING, not a TCP connect: a hung (stopped) Redis still accepts TCP.
    name     = "redis ping"
    args     = ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"]
    interval = "2s"
    timeout  = "1s"
  }
}
