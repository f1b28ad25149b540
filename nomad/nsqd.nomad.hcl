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

      template {
        data        = <<-EOT
          tcp_address = "{{ env "NOMAD_ADDR_tcp" }}"
          http_address = "{{ env "NOMAD_ADDR_http" }}"
          broadcast_address = "{{ env "NOMAD_IP_tcp" }}"
          data_path = "{{ env "NOMAD_ALLOC_DIR" }}/data"
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
