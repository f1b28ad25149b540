# NSQ's directory and admin: nsqlookupd (counts.nsqlookupd, on distinct
# clients, so at most one per client) and nsqadmin. nsqd runs on every
# client node (nsqd.nomad.hcl). Nomad registers these in Consul with their
# checks; nsqadmin finds the nsqlookupd instances through Consul (a
# template), never through addresses in this file.

job "nsq" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "2m"
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

  group "nsqlookupd" {
    count = var.counts["nsqlookupd"]

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "http" {}
      port "tcp" {}
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    # Consumers and nsqadmin use the HTTP port; nsqd registers on the TCP one.
    service {
      name = "nsqlookupd"
      port = "http"
      meta {
        tcp_port = "${NOMAD_PORT_tcp}"
      }
      check {
        type     = "http"
        path     = "/ping"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "nsqlookupd" {
      driver = var.driver

      dynamic "artifact" {
        for_each = local.nsq
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = "${local.nsq_bin}/nsqlookupd"
        args = [
          "-http-address=${NOMAD_ADDR_http}",
          "-tcp-address=${NOMAD_ADDR_tcp}",
          "-broadcast-address=${NOMAD_IP_http}",
        ]
      }

      kill_timeout = "10s"

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }

  group "nsqadmin" {
    count = 1

    network {
      port "http" {}
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name = "nsqadmin"
      port = "http"
      check {
        type     = "http"
        path     = "/ping"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nsqadmin" {
      driver = var.driver

      dynamic "artifact" {
        for_each = local.nsq
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = "${local.nsq_bin}/nsqadmin"
        args    = ["-config=${NOMAD_TASK_DIR}/nsqadmin.cfg"]
      }

      template {
        data        = <<-EOT
          http_address = "{{ env "NOMAD_ADDR_http" }}"
          nsqlookupd_http_addresses = [{{ range $i, $s := service "nsqlookupd" }}{{ if $i }}, {{ end }}"{{ $s.Address }}:{{ $s.Port }}"{{ end }}]
        EOT
        destination = "local/nsqadmin.cfg"
        change_mode = "restart"
      }

      kill_timeout = "10s"

      resources {
        cpu    = 100
        memory = 64
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

variable "driver" {
  description = "Task driver: exec on the cluster, raw_exec on a dev agent."
  type        = string
  default     = "exec"
}

variable "bin_dir" {
  description = "Dev agent only: absolute path of the binaries make build and make tools produced (.bin). Empty: download the release artifacts."
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

variable "counts" {
  description = "Instances per group, for every job (all four keys; each job reads its own). nsqlookupd runs on distinct clients: at most the number of clients."
  type        = map(number)
  default     = { nsqlookupd = 2, integer_gen = 2, averager = 2, api = 2 }
}

locals {
  # Where the tasks find the NSQ binaries: the dev agent's .bin, or the unpacked artifact.
  nsq_bin = var.bin_dir != "" ? var.bin_dir : "local/nsq-1.3.0.linux-amd64.go1.21.5/bin"
  # The NSQ release artifact, downloaded only when no bin_dir is given.
  nsq = var.bin_dir != "" ? [] : [{ source = var.nsq_url, checksum = "sha256:${var.nsq_sha256}" }]
}
