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

    # A TCP check here, not redis-cli's script check: a script check runs
    # inside the task through its executor, and on hosts booted in
    # containers (the cluster test's) that executor has exited under it,
    # leaving Redis running untracked and every restart refused with
    # "Address already in use". A hung Redis, which still accepts TCP, makes
    # integer-api's /health (a PING with the password) fail instead, and
    # the IntegerApiRedisUnreachable alert fire.
    service {
      name = "redis"
      port = "redis"
      check {
        type     = "tcp"
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

# ---- variables: only those this job uses (nomad/README.md lists them) ----
# The defaults are the cluster's. make nomad-run gives the job its target's
# values (vars/*.hcl) of these variables only, then NOMAD_VAR_*; by hand,
# NOMAD_VAR_* exports reach every job that declares them.

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["dc1"]
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
