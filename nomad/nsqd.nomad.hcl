# nsqd on every client node: NSQ intends producers to publish to their own
# host's nsqd, and integer-gen prefers the nsqd that Consul lists on its
# node. Messages are kept on disk (mem-queue-size 0) in a sticky ephemeral
# disk that follows the allocation. nsqd finds nsqlookupd through Consul.
#
# On the cluster (consul_tls) nsqd requires TLS with a client certificate
# from Consul's Connect CA on its TCP port, and asks nsqd-gate (a sidecar,
# on loopback) what each client may do; its own HTTP API is on loopback
# and the network reaches it through nsqd-gate's HTTPS listener, which checks the caller's SPIFFE identity (docs/design.md,
# "Trust").

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
      # nsqd's own HTTP API (on the cluster on loopback only).
      port "http" {}
      # consul_tls: nsqd's own HTTPS (loopback), nsqd-gate's HTTPS for the
      # network and its auth server (loopback).
      port "nsqd_https" {}
      port "https" {}
      port "auth" {}
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

    # Producers use the TCP port; the HTTP API's port is in the meta:
    # http_port on a dev agent, https_port (nsqd-gate) on the cluster. The
    # check GETs /ping, through the gate on the cluster (the one call it
    # answers without a certificate).
    service {
      name = "nsqd"
      port = "tcp"
      meta {
        http_port  = var.consul_tls ? "" : "${NOMAD_PORT_http}"
        https_port = var.consul_tls ? "${NOMAD_PORT_https}" : ""
      }
      check {
        type            = "http"
        port            = var.consul_tls ? "https" : "http"
        protocol        = var.consul_tls ? "https" : "http"
        tls_skip_verify = var.consul_tls
        path            = "/ping"
        interval        = "5s"
        timeout         = "2s"
      }
    }

    # nsqd-gate: nsqd's auth server and the identity-checked way to its
    # HTTP API (services/nsqdgate). A sidecar started before nsqd, restarted
    # on its own when it fails.
    dynamic "task" {
      for_each = var.consul_tls ? ["nsqd-gate"] : []
      labels   = [task.value]
      content {
        driver = var.driver
        lifecycle {
          hook    = "prestart"
          sidecar = true
        }

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
          command = "${local.bin}/nsqd-gate"
        }

        env {
          NSQD_GATE_HTTPS_ADDR     = "${NOMAD_ADDR_https}"
          NSQD_GATE_AUTH_ADDR      = "127.0.0.1:${NOMAD_PORT_auth}"
          NSQD_GATE_NSQD_HTTP_ADDR = "127.0.0.1:${NOMAD_PORT_http}"
          NSQD_GATE_GRANTS_FILE    = "${NOMAD_SECRETS_DIR}/grants.json"
          NSQD_GATE_TLS_CERT_FILE  = "${NOMAD_SECRETS_DIR}/leaf.pem"
          NSQD_GATE_TLS_ROOTS_FILE = "${NOMAD_SECRETS_DIR}/roots.pem"
          NSQD_GATE_LOG_FORMAT     = "json"
        }

        # Who may do what: read again when it changes (a rotated secret).
        template {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/nsqd" }}{{ .nsq_grants }}{{ end }}
          EOT
          destination = "secrets/grants.json"
          perms       = "0600"
          change_mode = "noop"
        }
        # The gate holds nsqd's identity; it reads both files again when
        # they change (no restart).
        template {
          data        = "{{ with caLeaf \"nsqd\" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}"
          destination = "secrets/leaf.pem"
          perms       = "0600"
          change_mode = "noop"
        }
        template {
          data        = "{{ range caRoots }}{{ .RootCertPEM }}{{ end }}"
          destination = "secrets/roots.pem"
          change_mode = "noop"
        }

        # Requests in progress finish (5 s), then it exits.
        kill_timeout = "10s"

        resources {
          cpu    = 50
          memory = 48
        }
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
        data        = var.consul_tls ? "${local.nsqd_cfg}${local.nsqd_tls_cfg}" : "${local.nsqd_cfg}http_address = \"{{ env \"NOMAD_ADDR_http\" }}\"\n"
        destination = "local/nsqd.cfg"
        # A new nsqlookupd set needs a restart: messages stay on disk.
        change_mode = "restart"
        splay       = "30s"
      }

      # nsqd reads its certificate and the roots only when it starts: a
      # renewal or a root rotation restarts it, each nsqd at its own moment
      # within the splay (messages stay on disk; producers use another
      # nsqd meanwhile).
      dynamic "template" {
        for_each = var.consul_tls ? ["leaf"] : []
        content {
          data        = "{{ with caLeaf \"nsqd\" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}"
          destination = "secrets/leaf.pem"
          perms       = "0600"
          change_mode = "restart"
          splay       = "1m"
        }
      }
      dynamic "template" {
        for_each = var.consul_tls ? ["roots"] : []
        content {
          data        = "{{ range caRoots }}{{ .RootCertPEM }}{{ end }}"
          destination = "secrets/roots.pem"
          change_mode = "restart"
          splay       = "1m"
        }
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

variable "consul_tls" {
  description = "The local Consul agent speaks HTTPS with ACLs (the cluster): the tasks get its CA and their ACL token from the job's Nomad variable (consul_ca, consul_token). false on a dev agent: no Nomad variable for Consul."
  type        = bool
  default     = true
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
  nsqd_cfg = <<-EOT
    tcp_address = "{{ env "NOMAD_ADDR_tcp" }}"
    broadcast_address = "{{ env "NOMAD_IP_tcp" }}"
    data_path = "{{ env "NOMAD_TASK_DIR" }}/data"
    mem_queue_size = 0
    nsqlookupd_tcp_addresses = [{{ range $i, $s := service "nsqlookupd" }}{{ if $i }}, {{ end }}"{{ $s.Address }}:{{ index $s.ServiceMeta "tcp_port" }}"{{ end }}]
  EOT
  # consul_tls: TLS with a verified client certificate on TCP, AUTH asked
  # of nsqd-gate, the HTTP API and its own HTTPS on loopback (nsqd reads an
  # empty https_address as every interface). Not a unix socket in the
  # allocation's directory: after a host's power cut the restored nsqd ran
  # while nsqd-gate found no socket there (the cluster test's host loss),
  # and a socket file left by a killed nsqd stops the next one starting. nsqlookupd
  # refuses an nsqd without an HTTP port: the one it gets is nsqd-gate's.
  nsqd_tls_cfg = <<-EOT
    http_address = "127.0.0.1:{{ env "NOMAD_PORT_http" }}"
    broadcast_http_port = {{ env "NOMAD_PORT_https" }}
    https_address = "127.0.0.1:{{ env "NOMAD_PORT_nsqd_https" }}"
    tls_cert = "{{ env "NOMAD_SECRETS_DIR" }}/leaf.pem"
    tls_key = "{{ env "NOMAD_SECRETS_DIR" }}/leaf.pem"
    tls_root_ca_file = "{{ env "NOMAD_SECRETS_DIR" }}/roots.pem"
    tls_required = "tcp-https"
    tls_client_auth_policy = "require-verify"
    tls_min_version = "tls1.2"
    auth_http_addresses = ["127.0.0.1:{{ env "NOMAD_PORT_auth" }}"]
  EOT
  # Where the loopstock binaries are (nsqd-gate): the dev agent's .bin, or the unpacked release.
  bin     = var.bin_dir != "" ? var.bin_dir : "local"
  release = var.bin_dir != "" ? [] : [{ source = var.release_url, checksum = "sha256:${var.release_sha256}" }]
  # Where the tasks find the NSQ binaries: the dev agent's .bin, or the unpacked artifact.
  nsq_bin = var.bin_dir != "" ? var.bin_dir : "local/nsq-1.3.0.linux-amd64.go1.21.5/bin"
  # The NSQ release artifact, downloaded only when no bin_dir is given.
  nsq = var.bin_dir != "" ? [] : [{ source = var.nsq_url, checksum = "sha256:${var.nsq_sha256}" }]
}
