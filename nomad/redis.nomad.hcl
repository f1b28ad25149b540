# Redis, the window store: AOF on with fsync always (a window acknowledged
# to the averager is on disk), data in the host volume "redis". Every client
# declares a volume of that name, so Redis is pinned to var.redis_node, the
# client whose volume holds the data: rescheduled anywhere else it would
# start empty. Losing that client stops Redis until it is back (README.md,
# "Redis and its data"). One task definition per driver, chosen with
# var.redis_driver: the official image on the cluster, the host's
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

    # Only the client whose volume holds the data (see the top of the file).
    constraint {
      attribute = "${node.unique.name}"
      value     = var.redis_node
    }

    # That client unreachable: keep the allocation as unknown, not lost, so
    # when the client returns its Redis goes on and no second one starts on
    # the same data.
    max_client_disconnect = "24h"

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
        args  = ["redis-server", "${NOMAD_SECRETS_DIR}/redis.conf", "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", "/data"]
      }

      # The password is in a Nomad variable only this job and integer-api
      # read (make nomad-run writes it): in a file, not on the command line.
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis" }}requirepass {{ .redis_password }}{{ end }}
        EOT
        destination = "secrets/redis.conf"
        change_mode = "restart"
      }

      # redis-cli in the check authenticates with it.
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis" }}REDISCLI_AUTH={{ .redis_password }}{{ end }}
        EOT
        destination = "secrets/redis.env"
        env         = true
        change_mode = "restart"
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

    # Only the client whose volume holds the data (see the top of the file).
    constraint {
      attribute = "${node.unique.name}"
      value     = var.redis_node
    }

    # That client unreachable: keep the allocation as unknown, not lost, so
    # when the client returns its Redis goes on and no second one starts on
    # the same data.
    max_client_disconnect = "24h"

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
        # The password (requirepass, in redis.conf) keeps out other clients:
        # without one, Redis's protected mode would refuse every client not
        # on loopback, integer-api included.
        command = "/usr/bin/redis-server"
        args = ["${NOMAD_SECRETS_DIR}/redis.conf", "--bind", "${NOMAD_IP_redis}", "--port", "${NOMAD_PORT_redis}",
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", "/data"]
      }

      # The password is in a Nomad variable only this job and integer-api
      # read (make nomad-run writes it): in a file, not on the command line.
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis" }}requirepass {{ .redis_password }}{{ end }}
        EOT
        destination = "secrets/redis.conf"
        change_mode = "restart"
      }

      # redis-cli in the check authenticates with it.
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis" }}REDISCLI_AUTH={{ .redis_password }}{{ end }}
        EOT
        destination = "secrets/redis.env"
        env         = true
        change_mode = "restart"
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
# The operator's values (URLs, checksums, the Redis node, counts) come from
# NOMAD_VAR_* or -var: Nomad applies var files after NOMAD_VAR_*, so no var
# file sets them. make nomad-run refuses a cluster deploy without them.

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
  description = "Cluster: URL of the loopstock release tarball that make dist builds (loopstock_VERSION_linux_amd64.tar.gz)."
  type        = string
  default     = ""
}

variable "release_sha256" {
  description = "Cluster: SHA-256 of the release tarball (its line in make dist's SHA256SUMS)."
  type        = string
  default     = ""
}

variable "nsq_url" {
  description = "Cluster: URL of the NSQ v1.3.0 release tarball nsq-1.3.0.linux-amd64.go1.21.5.tar.gz."
  type        = string
  default     = ""
}

variable "nsq_sha256" {
  description = "Cluster: SHA-256 of the NSQ release tarball."
  type        = string
  default     = ""
}

variable "prometheus_url" {
  description = "Cluster: URL of the Prometheus 2.54.1 release tarball prometheus-2.54.1.linux-amd64.tar.gz (monitoring job)."
  type        = string
  default     = ""
}

variable "prometheus_sha256" {
  description = "Cluster: SHA-256 of the Prometheus tarball."
  type        = string
  default     = ""
}

variable "grafana_url" {
  description = "Cluster: URL of the Grafana 11.2.0 release tarball grafana-11.2.0.linux-amd64.tar.gz (monitoring job)."
  type        = string
  default     = ""
}

variable "grafana_sha256" {
  description = "Cluster: SHA-256 of the Grafana tarball."
  type        = string
  default     = ""
}

variable "redis_node" {
  description = "Name of the Nomad client whose host volume redis holds Redis's data (nomad node status). Redis runs only there; empty places it nowhere."
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

variable "nsqd_copies" {
  description = "integer-gen publishes each message to this many nsqd (its client's first): 2 keeps every integer through the loss of a client with the active averager."
  type        = number
  default     = 2
}

variable "counts" {
  description = "Instances per group (all four keys). nsqlookupd runs on distinct clients: at most the number of clients."
  type        = map(number)
  default     = { nsqlookupd = 2, integer_gen = 2, averager = 2, api = 2 }
}

locals {
  # Where a task finds its binary: the dev agent's .bin, or the unpacked artifact.
  bin     = var.bin_dir != "" ? var.bin_dir : "local"
  nsq_bin = var.bin_dir != "" ? var.bin_dir : "local/nsq-1.3.0.linux-amd64.go1.21.5/bin"
  # Artifacts are downloaded only when no bin_dir is given.
  release = var.bin_dir != "" ? [] : [{ source = var.release_url, checksum = "sha256:${var.release_sha256}" }]
  nsq     = var.bin_dir != "" ? [] : [{ source = var.nsq_url, checksum = "sha256:${var.nsq_sha256}" }]
  # The monitoring job's tarballs and the folders they unpack to.
  prometheus = { source = var.prometheus_url, checksum = "sha256:${var.prometheus_sha256}", dir = "prometheus-2.54.1.linux-amd64" }
  grafana    = { source = var.grafana_url, checksum = "sha256:${var.grafana_sha256}", dir = "grafana-v11.2.0" }
}
