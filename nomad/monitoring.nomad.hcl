# Monitoring: Prometheus, finding every loopstock service (and
# Alertmanager) through Consul service discovery, with the alert rules of
# nomad/monitoring/rules.yml; Alertmanager, sending to the webhook an
# operator sets; and, optionally, Grafana with the dashboard of
# nomad/monitoring/loopstock-dashboard.json. The configuration files of
# nomad/monitoring/ reach the job as variables (prometheus_config,
# prometheus_rules, alertmanager_config, grafana_dashboard): make nomad-run
# reads them; Nomad's parse API refuses file(). On the cluster the
# binaries come from their release tarballs; on a dev agent, from bin_dir
# (make tools builds Prometheus and Alertmanager).

job "monitoring" {
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
    delay          = "30s"
    delay_function = "exponential"
    max_delay      = "5m"
    unlimited      = true
  }

  group "prometheus" {
    count = 1

    network {
      port "http" {}
    }

    ephemeral_disk {
      size    = 2048
      sticky  = true
      migrate = true
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      name = "prometheus"
      port = "http"
      check {
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "prometheus" {
      driver = var.driver

      dynamic "artifact" {
        for_each = var.bin_dir != "" ? [] : [local.prometheus]
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = var.bin_dir != "" ? "${var.bin_dir}/prometheus" : "local/${local.prometheus.dir}/prometheus"
        args = [
          "--config.file=${NOMAD_TASK_DIR}/prometheus.yml",
          "--storage.tsdb.path=${NOMAD_TASK_DIR}/data/prometheus",
          "--storage.tsdb.retention.time=7d",
          "--web.listen-address=${NOMAD_ADDR_http}",
        ]
      }

      # What the configuration's template reads (nomad/monitoring/prometheus.yml).
      env {
        CONSUL_HTTP_ADDR = var.consul_http_addr
        CONSUL_HTTP_SSL  = var.consul_tls ? "true" : "false"
      }

      # The cluster's Consul (consul_tls): Prometheus's own ACL token and
      # the CA, from the job's Nomad variable; a dev agent's Consul has
      # neither.
      dynamic "template" {
        for_each = var.consul_tls ? ["consul_token"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/monitoring" }}{{ .consul_token }}{{ end }}
          EOT
          destination = "secrets/consul-token"
          perms       = "0600"
          change_mode = "restart"
        }
      }

      dynamic "template" {
        for_each = var.consul_tls ? ["consul_ca"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/monitoring" }}{{ .consul_ca }}{{ end }}
          EOT
          destination = "secrets/consul-ca.pem"
          change_mode = "restart"
        }
      }

      template {
        data        = var.prometheus_config
        destination = "local/prometheus.yml"
        change_mode = "restart"
      }

      # The rules as they are: their {{ $labels }} are Prometheus's own
      # templates, not consul-template's.
      template {
        data            = var.prometheus_rules
        destination     = "local/rules.yml"
        left_delimiter  = "[[["
        right_delimiter = "]]]"
        change_mode     = "restart"
      }

      kill_timeout = "30s"

      resources {
        cpu    = 300
        memory = 512
      }
    }
  }

  group "alertmanager" {
    count = 1

    network {
      port "http" {}
    }

    ephemeral_disk {
      size    = 256
      sticky  = true
      migrate = true
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    # Prometheus finds it here (alerting in prometheus.yml).
    service {
      name = "alertmanager"
      port = "http"
      check {
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "alertmanager" {
      driver = var.driver

      dynamic "artifact" {
        for_each = var.bin_dir != "" ? [] : [local.alertmanager]
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = var.bin_dir != "" ? "${var.bin_dir}/alertmanager" : "local/${local.alertmanager.dir}/alertmanager"
        args = [
          "--config.file=${NOMAD_TASK_DIR}/alertmanager.yml",
          "--storage.path=${NOMAD_TASK_DIR}/data/alertmanager",
          "--web.listen-address=${NOMAD_ADDR_http}",
          # One instance: no gossip between Alertmanagers.
          "--cluster.listen-address=",
        ]
      }

      env {
        ALERTMANAGER_WEBHOOK_URL = var.alertmanager_webhook_url
      }

      template {
        data        = var.alertmanager_config
        destination = "local/alertmanager.yml"
        change_mode = "restart"
      }

      kill_timeout = "20s"

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }

  # Optional: only when its tarball is given (cluster) or it is on PATH
  # (dev agent); make nomad-run sets grafana.
  group "grafana" {
    count = var.grafana ? 1 : 0

    network {
      port "http" {}
    }

    ephemeral_disk {
      size    = 512
      sticky  = true
      migrate = true
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      name = "grafana"
      port = "http"
      check {
        type     = "http"
        path     = "/api/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "grafana" {
      driver = var.driver

      dynamic "artifact" {
        for_each = var.bin_dir != "" || !var.grafana ? [] : [local.grafana]
        content {
          source = artifact.value.source
          options {
            checksum = artifact.value.checksum
          }
        }
      }

      config {
        command = var.bin_dir != "" ? "grafana" : "local/${local.grafana.dir}/bin/grafana"
        args    = var.bin_dir != "" ? ["server"] : ["server", "--homepath=local/${local.grafana.dir}"]
      }

      env {
        GF_SERVER_HTTP_ADDR            = "${NOMAD_IP_http}"
        GF_SERVER_HTTP_PORT            = "${NOMAD_PORT_http}"
        GF_PATHS_DATA                  = "${NOMAD_TASK_DIR}/data/grafana"
        GF_PATHS_PROVISIONING          = "${NOMAD_TASK_DIR}/provisioning"
        GF_AUTH_ANONYMOUS_ENABLED      = "true"
        GF_AUTH_ANONYMOUS_ORG_ROLE     = "Viewer"
        GF_ANALYTICS_REPORTING_ENABLED = "false"
        GF_ANALYTICS_CHECK_FOR_UPDATES = "false"
      }

      # Prometheus is found through Consul.
      template {
        data        = <<-EOT
          apiVersion: 1
          datasources:
            - name: Prometheus
              uid: prometheus
              type: prometheus
              access: proxy
              isDefault: true
              url: {{ range service "prometheus" }}http://{{ .Address }}:{{ .Port }}{{ end }}
        EOT
        destination = "local/provisioning/datasources/prometheus.yaml"
        change_mode = "restart"
      }

      template {
        data        = <<-EOT
          apiVersion: 1
          providers:
            - name: loopstock
              type: file
              options:
                path: {{ env "NOMAD_TASK_DIR" }}/dashboards
        EOT
        destination = "local/provisioning/dashboards/loopstock.yaml"
        change_mode = "restart"
      }

      # The dashboard, monitoring/loopstock-dashboard.json, as a variable:
      # Nomad's parse API refuses file(). Its {{legend}} formats are not
      # template actions. Without it (empty), Grafana has no dashboard.
      dynamic "template" {
        for_each = var.grafana_dashboard != "" ? [var.grafana_dashboard] : []
        content {
          data            = template.value
          destination     = "local/dashboards/loopstock.json"
          left_delimiter  = "[[["
          right_delimiter = "]]]"
          change_mode     = "restart"
        }
      }

      kill_timeout = "20s"

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

variable "prometheus_url" {
  description = "Cluster: URL of the Prometheus 3.16.0 release tarball prometheus-3.16.0.linux-amd64.tar.gz (make monitoring-release builds it in that layout from the pinned module)."
  type        = string
  default     = ""
}

variable "prometheus_sha256" {
  description = "Cluster: SHA-256 of the Prometheus tarball."
  type        = string
  default     = ""
}

variable "alertmanager_url" {
  description = "Cluster: URL of the Alertmanager 0.25.0 release tarball alertmanager-0.25.0.linux-amd64.tar.gz."
  type        = string
  default     = ""
}

variable "alertmanager_sha256" {
  description = "Cluster: SHA-256 of the Alertmanager tarball."
  type        = string
  default     = ""
}

variable "alertmanager_webhook_url" {
  description = "Where Alertmanager POSTs notifications (its webhook format). Empty: alerts are kept and shown by Alertmanager, sent nowhere."
  type        = string
  default     = ""
}

variable "prometheus_config" {
  description = "The text of monitoring/prometheus.yml, a template (make nomad-run reads the file; by hand: -var \"prometheus_config=$(cat nomad/monitoring/prometheus.yml)\")."
  type        = string
}

variable "prometheus_rules" {
  description = "The text of monitoring/rules.yml (by hand: -var \"prometheus_rules=$(cat nomad/monitoring/rules.yml)\")."
  type        = string
}

variable "alertmanager_config" {
  description = "The text of monitoring/alertmanager.yml, a template (by hand: -var \"alertmanager_config=$(cat nomad/monitoring/alertmanager.yml)\")."
  type        = string
}

variable "grafana" {
  description = "Run Grafana: true with grafana_url and grafana_sha256 on the cluster, or grafana on PATH on a dev agent."
  type        = bool
  default     = false
}

variable "grafana_url" {
  description = "Cluster: URL of the Grafana 11.2.0 release tarball grafana-11.2.0.linux-amd64.tar.gz."
  type        = string
  default     = ""
}

variable "grafana_sha256" {
  description = "Cluster: SHA-256 of the Grafana tarball."
  type        = string
  default     = ""
}

variable "grafana_dashboard" {
  description = "The text of monitoring/loopstock-dashboard.json, which Grafana provisions (make nomad-run reads the file; by hand: -var \"grafana_dashboard=$(cat nomad/monitoring/loopstock-dashboard.json)\"). Empty: Grafana without the dashboard."
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

locals {
  # The tarballs and the folders they unpack to.
  prometheus   = { source = var.prometheus_url, checksum = "sha256:${var.prometheus_sha256}", dir = "prometheus-3.16.0.linux-amd64" }
  alertmanager = { source = var.alertmanager_url, checksum = "sha256:${var.alertmanager_sha256}", dir = "alertmanager-0.25.0.linux-amd64" }
  grafana      = { source = var.grafana_url, checksum = "sha256:${var.grafana_sha256}", dir = "grafana-v11.2.0" }
}
