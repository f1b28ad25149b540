# nsqd on every client node: NSQ intends producers to publish to their own
# host's nsqd, and integer-gen prefers the nsqd that Consul lists on its
# node. Messages are kept on disk (mem-queue-size 0) in a sticky ephemeral
# disk that follows the allocation. nsqd finds nsqlookupd through Consul.

job "nsqd" {
  datacenters = var.datacenters
  type        = "system"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "2m"
  }

  group "nsqd" {
    network {
      port "tcp" {}
      port "http" {}
    }

    # The messages live in the task's local/data, which the sticky disk
    # keeps across restarts and updates. Not in the allocation's shared
    # alloc/: after a host's restart Nomad restores the task without
    # mounting that shared directory into it again (the cluster test's
    # host loss found nsqd failing "open /alloc/data").
    ephemeral_disk {
      size    = 2048
      sticky  = true
      migrate = true
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    # Producers use the TCP port; the HTTP port is in the meta (nsqadmin, tools).
    service {
      name = "nsqd"
      port = "tcp"
      meta {
        http_port = "${NOMAD_PORT_http}"
      }
      check {
        type     = "http"
        port     = "http"
        path     = "/ping"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "nsqd" {
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
        command = "${local.nsq_bin}/nsqd"
        args    = ["-config=${NOMAD_TASK_DIR}/nsqd.cfg"]
      }

      # Creates local/data, nsqd's data_path (nsqd does not create it).
      template {
        data        = "nsqd's messages (data_path in nsqd.cfg)\n"
        destination = "local/data/README"
        change_mode = "noop"
      }

      template {
        data        = <<-EOT
          tcp_address = "{{ env "NOMAD_ADDR_tcp" }}"
          http_address = "{{ env "NOMAD_ADDR_http" }}"
          broadcast_address = "{{ env "NOMAD_IP_tcp" }}"
          data_path = "{{ env "NOMAD_TASK_DIR" }}/data"
          mem_queue_size = 0
          nsqlookupd_tcp_addresses = [{{ range $i, $s := service "nsqlookupd" }}{{ if $i }}, {{ end }}"{{ $s.Address }}:{{ index $s.ServiceMeta "tcp_port" }}"{{ end }}]
        EOT
        destination = "local/nsqd.cfg"
        # A new nsqlookupd set needs a restart: messages stay on disk.
        change_mode = "restart"
        splay       = "30s"
      }

      # nsqd writes in-flight messages back to disk when it stops.
      kill_timeout = "30s"

      resources {
        cpu    = 200
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

locals {
  # Where the tasks find the NSQ binaries: the dev agent's .bin, or the unpacked artifact.
  nsq_bin = var.bin_dir != "" ? var.bin_dir : "local/nsq-1.3.0.linux-amd64.go1.21.5/bin"
  # The NSQ release artifact, downloaded only when no bin_dir is given.
  nsq = var.bin_dir != "" ? [] : [{ source = var.nsq_url, checksum = "sha256:${var.nsq_sha256}" }]
}
