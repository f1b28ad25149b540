# integeraverage-cal: two instances, one active through a Consul lock; the
# standby takes over when the active one stops or dies. It registers itself
# in Consul. The write token comes from the Nomad variable
# nomad/jobs/integeraverage-cal (key write_token), never from the job file.

job "integeraverage-cal" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel      = 1
    health_check      = "task_states"
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

  group "averager" {
    count = var.counts["averager"]

    spread {
      attribute = "${node.unique.id}"
    }

    network {
      port "http" {}
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "integeraverage-cal" {
      driver = var.driver

      dynamic "artifact" {
        for_each = local.release
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = "${local.bin}/integeraverage-cal"
      }

      env {
        CONSUL_HTTP_SSL                   = var.consul_tls ? "true" : "false"
        CONSUL_CACERT                     = var.consul_tls ? "${NOMAD_SECRETS_DIR}/consul-ca.pem" : ""
        CONSUL_HTTP_ADDR                  = var.consul_http_addr
        INTEGERAVERAGE_CAL_HTTP_ADDR      = "${NOMAD_ADDR_http}"
        INTEGERAVERAGE_CAL_ADVERTISE_ADDR = "${NOMAD_IP_http}"
        INTEGERAVERAGE_CAL_SERVICE_ID     = "integeraverage-cal-${NOMAD_ALLOC_ID}"
        INTEGERAVERAGE_CAL_LOG_FORMAT     = "json"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/integeraverage-cal" }}INTEGERAVERAGE_CAL_WRITE_TOKEN={{ .write_token }}{{ end }}
        EOT
        destination = "secrets/token.env"
        env         = true
        change_mode = "restart"
      }

      # Consul ACL token and CA, from the job's Nomad variable (make nomad-run
      # writes it; on the cluster: consul_token and consul_ca).
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/integeraverage-cal" }}CONSUL_HTTP_TOKEN={{ .consul_token }}{{ end }}
        EOT
        destination = "secrets/consul.env"
        env         = true
        change_mode = "restart"
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/integeraverage-cal" }}{{ .consul_ca }}{{ end }}
        EOT
        destination = "secrets/consul-ca.pem"
        change_mode = "restart"
      }

      # Its stop hands held messages back to nsqd and resigns the lock.
      kill_timeout = "15s"

      resources {
        cpu    = 200
        memory = 128
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
