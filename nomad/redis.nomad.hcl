# Redis, the window store: AOF on with fsync always (a window acknowledged
# to the averager is on disk), data in the host volume "redis" that every
# client that may run it declares. One task definition per driver, chosen
# with var.redis_driver: the official image on the cluster, the host's
# redis-server in the exec driver's chroot on a dev agent (no Docker there).

job "redis" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "5m"
    auto_revert       = true
  }

  # Every group: replace a lost allocation elsewhere, backing off, without giving up.
  reschedule {
    delay          = "10s"
    delay_function = "exponential"
    max_delay      = "2m"
    unlimited      = true
  }

  group "redis" {
    count = var.redis_driver == "docker" ? 1 : 0

    volume "data" {
      type   = "host"
      source = "redis"
    }

    network {
      port "redis" {
        to = 6379
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name = "redis"
      port = "redis"
      check {
        # A PING, not a TCP connect: a hung Redis still accepts TCP.
        type     = "script"
        task     = "redis"
        command  = "redis-cli"
        args     = ["ping"]
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image = "redis:7.0"
        ports = ["redis"]
        args  = ["redis-server", "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", "/data"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      kill_timeout = "20s"

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }

  group "redis-host" {
    count = var.redis_driver == "docker" ? 0 : 1

    volume "data" {
      type   = "host"
      source = "redis"
    }

    network {
      port "redis" {}
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name = "redis"
      port = "redis"
      check {
        type     = "script"
        task     = "redis"
        command  = "/usr/bin/redis-cli"
        args     = ["-h", "${NOMAD_IP_redis}", "-p", "${NOMAD_PORT_redis}", "ping"]
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = var.redis_driver

      config {
        # The exec driver runs a host binary by its absolute path in its chroot.
        command = "/usr/bin/redis-server"
        args = ["--bind", "${NOMAD_IP_redis}", "--port", "${NOMAD_PORT_redis}", "--appendonly", "yes",
        "--appendfsync", "always", "--save", "", "--dir", "/data"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      kill_timeout = "20s"

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}

# ---- variables shared by every job file (the var files in vars/ set them) ----

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["dc1"]
}

variable "driver" {
  description = "Task driver of the Go services and NSQ: exec on the cluster, raw_exec on a dev agent."
  type        = string
  default     = "exec"
}

variable "bin_dir" {
  description = "Dev agent only: absolute path of the binaries make build and make tools produced (.bin). Empty: download the release artifacts."
  type        = string
  default     = ""
}

variable "release_url" {
  description = "URL of the loopstock release tarball that make dist builds (loopstock_VERSION_linux_amd64.tar.gz)."
  type        = string
  default     = "http://artifacts.service.consul/loopstock/loopstock_0.1.0_linux_amd64.tar.gz"
}

variable "release_sha256" {
  description = "SHA-256 of the release tarball (from make dist's SHA256SUMS)."
  type        = string
  default     = ""
}

variable "nsq_url" {
  description = "URL of the NSQ v1.3.0 release tarball for linux-amd64."
  type        = string
  default     = "http://artifacts.service.consul/nsq/nsq-1.3.0.linux-amd64.go1.21.5.tar.gz"
}

variable "nsq_sha256" {
  description = "SHA-256 of the NSQ release tarball."
  type        = string
  default     = ""
}

variable "redis_driver" {
  description = "docker (the official image, on the cluster) or exec (the host's redis-server, on a dev agent)."
  type        = string
  default     = "docker"
}

variable "consul_http_addr" {
  description = "The local Consul agent's HTTP API, as the services reach it."
  type        = string
  default     = "127.0.0.1:8500"
}

variable "consul_tls" {
  description = "The local Consul agent speaks HTTPS (the cluster): the services get its CA and their ACL token from their Nomad variable."
  type        = bool
  default     = true
}

variable "monitoring" {
  description = "Prometheus and Grafana release tarballs (url, sha256, and the folder they unpack to) for the monitoring job; on a dev agent the binaries on PATH are used."
  type = map(object({
    url    = string
    sha256 = string
    dir    = string
  }))
  default = {
    prometheus = { url = "http://artifacts.service.consul/prometheus/prometheus-2.54.1.linux-amd64.tar.gz", sha256 = "", dir = "prometheus-2.54.1.linux-amd64" }
    grafana    = { url = "http://artifacts.service.consul/grafana/grafana-11.2.0.linux-amd64.tar.gz", sha256 = "", dir = "grafana-v11.2.0" }
  }
}

variable "counts" {
  description = "Instances per group."
  type        = map(number)
  default     = { nsqlookupd = 3, integer_gen = 2, averager = 2, api = 2 }
}

locals {
  # Where a task finds its binary: the dev agent's .bin, or the unpacked artifact.
  bin     = var.bin_dir != "" ? var.bin_dir : "local"
  nsq_bin = var.bin_dir != "" ? var.bin_dir : "local/nsq-1.3.0.linux-amd64.go1.21.5/bin"
  # Artifacts are downloaded only when no bin_dir is given.
  release = var.bin_dir != "" ? [] : [{ source = var.release_url, checksum = "sha256:${var.release_sha256}" }]
  nsq     = var.bin_dir != "" ? [] : [{ source = var.nsq_url, checksum = "sha256:${var.nsq_sha256}" }]
}