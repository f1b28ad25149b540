# integer-gen: one integer per 100 ms slot per instance, no two instances
# alike in a slot (coordinated through Consul KV). The binary registers
# itself in Consul with its health check; Nomad checks /health too, for
# deployments only (the service block below).

job "integer-gen" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "1m"
    progress_deadline = "2m"
    auto_revert       = true
  }

  # Every group: replace a lost allocation elsewhere, backing off, without giving up.
  reschedule {
    delay          = "10s"
    delay_function = "exponential"
    max_delay      = "2m"
    unlimited      = true
  }

  group "integer-gen" {
    count = var.counts["integer_gen"]

    spread {
      attribute = "${node.unique.id}"
    }

    # On the cluster at most one instance per client: losing a client then
    # leaves every service running, and the client gets its instance back on
    # return (Nomad never moves a running allocation to rebalance).
    dynamic "constraint" {
      for_each = var.distinct_clients ? [1] : []
      content {
        operator = "distinct_hosts"
        value    = "true"
      }
    }

    network {
      port "http" {}
    }

    # Deployment health: Nomad's own check of /health, so health_check =
    # "checks" holds the roll-out until instances answer and auto_revert
    # acts on one that never does. provider "nomad" keeps it out of Consul,
    # where the binary registers itself with its own check: a Consul service
    # here would list every instance twice.
    service {
      name     = "integer-gen"
      provider = "nomad"
      port     = "http"
      check {
        type     = "http"
        path     = "/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "integer-gen" {
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
        command = "${local.bin}/integer-gen"
      }

      env {
        CONSUL_HTTP_SSL            = var.consul_tls ? "true" : "false"
        CONSUL_CACERT              = var.consul_tls ? "${NOMAD_SECRETS_DIR}/consul-ca.pem" : ""
        CONSUL_HTTP_ADDR           = var.consul_http_addr
        INTEGER_GEN_HTTP_ADDR      = "${NOMAD_ADDR_http}"
        INTEGER_GEN_ADVERTISE_ADDR = "${NOMAD_IP_http}"
        INTEGER_GEN_SERVICE_ID     = "integer-gen-${NOMAD_ALLOC_ID}"
        INTEGER_GEN_LOG_FORMAT     = "json"
        # Every message to two nsqd (this client's first): a client lost with
        # the active averager and its nsqd then loses no integer. One nsqd
        # (a dev agent): one copy.
        INTEGER_GEN_NSQD_COPIES = var.nsqd_copies
        # With consul_tls: mutual TLS with the certificates rendered below.
        INTEGER_GEN_TLS_CERT_FILE  = var.consul_tls ? "${NOMAD_SECRETS_DIR}/leaf.pem" : ""
        INTEGER_GEN_TLS_ROOTS_FILE = var.consul_tls ? "${NOMAD_SECRETS_DIR}/roots.pem" : ""
      }

      # The cluster's Consul (consul_tls): its ACL token and CA, from the
      # job's Nomad variable. A dev agent's Consul has neither, and no
      # template there waits on a Nomad variable the job does not need.
      dynamic "template" {
        for_each = var.consul_tls ? ["consul_token"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/integer-gen" }}CONSUL_HTTP_TOKEN={{ .consul_token }}{{ end }}
          EOT
          destination = "secrets/consul.env"
          perms       = "0600"
          env         = true
          change_mode = "restart"
        }
      }

      dynamic "template" {
        for_each = var.consul_tls ? ["consul_ca"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/integer-gen" }}{{ .consul_ca }}{{ end }}
          EOT
          destination = "secrets/consul-ca.pem"
          change_mode = "restart"
        }
      }

      # The data plane's mutual TLS (consul_tls: the cluster's Consul, whose
      # Connect CA issues the certificates): this service's leaf, with its
      # key in the same 0600 file so a renewal never pairs a new
      # certificate with an old key, and the CA's roots. The service reads
      # both files again when they change (renewal, root rotation): no
      # restart, so nothing restarts every instance at once.
      dynamic "template" {
        for_each = var.consul_tls ? ["leaf"] : []
        content {
          data        = "{{ with caLeaf \"integer-gen\" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}"
          destination = "secrets/leaf.pem"
          perms       = "0600"
          change_mode = "noop"
        }
      }

      dynamic "template" {
        for_each = var.consul_tls ? ["roots"] : []
        content {
          data        = "{{ range caRoots }}{{ .RootCertPEM }}{{ end }}"
          destination = "secrets/roots.pem"
          change_mode = "noop"
        }
      }

      # Its secret for nsqd's AUTH (nsqd-gate grants by it, with the leaf).
      dynamic "template" {
        for_each = var.consul_tls ? ["nsq_secret"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/integer-gen" }}INTEGER_GEN_NSQ_AUTH_SECRET={{ .nsq_secret }}{{ end }}
          EOT
          destination = "secrets/nsq.env"
          perms       = "0600"
          env         = true
          change_mode = "restart"
          splay       = "30s"
        }
      }

      # Its stop releases the coordination lease and drains the queue to nsqd.
      kill_timeout = "15s"

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

variable "consul_http_addr" {
  description = "The local Consul agent's HTTP API, as the tasks reach it: HTTPS on 8501 on the cluster, 127.0.0.1:8500 on a dev agent."
  type        = string
  default     = "127.0.0.1:8501"
}

variable "consul_tls" {
  description = "The local Consul agent speaks HTTPS with ACLs (the cluster): the tasks get its CA and their ACL token from the job's Nomad variable (consul_ca, consul_token). false on a dev agent: no Nomad variable for Consul."
  type        = bool
  default     = true
}

variable "nsqd_copies" {
  description = "integer-gen publishes each message to this many nsqd (its client's first): 2 keeps every integer through the loss of a client with the active averager."
  type        = number
  default     = 2
}

variable "distinct_clients" {
  description = "At most one instance of each group per client (the cluster), so no client's loss takes every instance; counts must then not exceed the clients. false: a dev agent, one host running them all."
  type        = bool
  default     = true
}

variable "counts" {
  description = "Instances per group, for every job (all four keys; each job reads its own). nsqlookupd runs on distinct clients: at most the number of clients."
  type        = map(number)
  default     = { nsqlookupd = 2, integer_gen = 2, averager = 2, api = 2 }
}

locals {
  # Where the task finds its binary: the dev agent's .bin, or the unpacked artifact.
  bin = var.bin_dir != "" ? var.bin_dir : "local"
  # The release artifact, downloaded only when no bin_dir is given.
  release = var.bin_dir != "" ? [] : [{ source = var.release_url, checksum = "sha256:${var.release_sha256}" }]
}
