# The Redis Sentinels: one on each server (node pool "quorum"), three in
# all, quorum 2. They watch the Redis primary of the redis job and promote
# its replica when the primary's host is lost. On the servers because the
# cluster has two clients: Sentinels on the clients alone would lose their
# majority with the primary's host (docs/design.md §4). Each registers in
# Consul, where integer-api finds them.
#
# A Sentinel rewrites its own config (what it learns of the primary, the
# replicas and the other Sentinels); it is seeded once into the
# allocation's sticky local dir from the other Sentinels' answer, or, at
# the store's first start, from the Redis whose ROLE is master.

job "redis-sentinel" {
  datacenters = var.datacenters
  type        = "service"
  node_pool   = var.redis_replicated ? var.sentinel_node_pool : "default"

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "2m"
    progress_deadline = "4m"
    auto_revert       = true
  }

  reschedule {
    delay          = "10s"
    delay_function = "exponential"
    max_delay      = "2m"
    unlimited      = true
  }

  group "sentinel" {
    count = var.redis_replicated ? 3 : 0

    constraint {
      distinct_hosts = true
    }

    # Its view of the store survives a restart and an update in place.
    ephemeral_disk {
      sticky = true
    }

    network {
      port "sentinel" {
        static = 26379
        to     = 26379
      }
    }

    restart {
      attempts = 30
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name = "redis-sentinel"
      port = "sentinel"
      check {
        type     = "tcp"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "sentinel" {
      driver = var.redis_driver

      dynamic "config" {
        for_each = var.redis_driver == "docker" ? ["docker"] : []
        content {
          image      = "redis:7.0"
          ports      = ["sentinel"]
          entrypoint = ["/bin/sh", "${NOMAD_TASK_DIR}/start.sh"]
        }
      }
      dynamic "config" {
        for_each = var.redis_driver == "docker" ? [] : ["exec"]
        content {
          command = "/bin/sh"
          args    = ["${NOMAD_TASK_DIR}/start.sh"]
        }
      }

      env {
        SENTINEL_BIND = var.redis_driver == "docker" ? "0.0.0.0" : "${NOMAD_IP_sentinel}"
        MASTER        = "loopstock"
        DOWN_AFTER_MS = var.sentinel_down_after_ms
        # The start script's redis-cli: TLS with this Sentinel's
        # certificate, as the store's sentinel user.
        REDIS_CLI_ARGS = "--tls --cert ${NOMAD_SECRETS_DIR}/leaf.pem --key ${NOMAD_SECRETS_DIR}/leaf.pem --cacert ${NOMAD_SECRETS_DIR}/roots.pem --user sentinel"
      }

      template {
        data        = local.sentinel_start
        destination = "local/start.sh"
        change_mode = "noop"
      }

      # The Redis password, for Sentinel's own clients (requirepass) and
      # for Redis (auth-pass): on stdin, on no command line.
      # Fed to the Sentinel on stdin, after its own sentinel.conf: TLS only
      # with client certificates (and to Redis), the Sentinels' ACL users
      # (internal/redisacl) in an aclfile, which the Sentinel's rewrites of
      # its config leave out (user lines there would be written back, and a
      # user defined twice stops the next start), and the store's sentinel
      # user towards Redis and the other Sentinels.
      template {
        data        = <<-EOT
          port 0
          tls-port 26379
          tls-cert-file {{ env "NOMAD_SECRETS_DIR" }}/leaf.pem
          tls-key-file {{ env "NOMAD_SECRETS_DIR" }}/leaf.pem
          tls-ca-cert-file {{ env "NOMAD_SECRETS_DIR" }}/roots.pem
          tls-auth-clients yes
          tls-replication yes
          tls-protocols "TLSv1.2 TLSv1.3"
          {{ with nomadVar "nomad/jobs/redis-sentinel" }}sentinel auth-user loopstock sentinel
          sentinel auth-pass loopstock {{ .redis_sentinel_password }}
          sentinel sentinel-user sentinel
          sentinel sentinel-pass {{ .redis_sentinel_password }}{{ end }}
          aclfile {{ env "NOMAD_SECRETS_DIR" }}/users.acl
        EOT
        destination = "secrets/auth.conf"
        perms       = "0600"
        change_mode = "restart"
        splay       = "30s"
      }
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis-sentinel" }}REDISCLI_AUTH={{ .redis_sentinel_password }}{{ end }}
        EOT
        destination = "secrets/redis.env"
        perms       = "0600"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis-sentinel" }}{{ .sentinel_users }}{{ end }}
        EOT
        destination = "secrets/users.acl"
        perms       = "0600"
        change_mode = "restart"
        splay       = "30s"
      }
      # A Sentinel reads its certificate when it starts: a renewal or a root
      # rotation restarts it, each at its own moment within the splay (two
      # of three keep the quorum).
      template {
        data        = "{{ with caLeaf \"redis-sentinel\" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}"
        destination = "secrets/leaf.pem"
        perms       = "0600"
        change_mode = "restart"
        splay       = "30s"
      }
      template {
        data        = "{{ range caRoots }}{{ .RootCertPEM }}{{ end }}"
        destination = "secrets/roots.pem"
        change_mode = "restart"
        splay       = "30s"
      }

      kill_timeout = "10s"

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}

locals {
  sentinel_start = <<-EOT
    #!/bin/sh
    set -u
    umask 077
    conf="$NOMAD_TASK_DIR/sentinel.conf"
    sentinels="{{ range service "redis-sentinel" }}{{ .Address }}:{{ .Port }} {{ end }}"
    peers="{{ range service "redis|any" }}{{ .Address }}:{{ .Port }} {{ end }}"
    say() { echo "loopstock-sentinel: $*" >&2; }
    if [ ! -s "$conf" ]; then
      primary=""
      for s in $sentinels; do
        [ "$${s%:*}" = "$NOMAD_IP_sentinel" ] && continue
        a=$(redis-cli $${REDIS_CLI_ARGS:-} --no-auth-warning -h "$${s%:*}" -p "$${s#*:}" sentinel get-master-addr-by-name "$MASTER" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
        case "$a" in *" "*) primary="$a"; break ;; esac
      done
      if [ -z "$primary" ]; then
        for p in $peers; do
          role=$(redis-cli $${REDIS_CLI_ARGS:-} --no-auth-warning -h "$${p%:*}" -p "$${p#*:}" role 2>/dev/null | head -n 1)
          [ "$role" = master ] && primary="$${p%:*} $${p#*:}" && break
        done
      fi
      if [ -z "$primary" ]; then
        say "no other Sentinel and no Redis primary answer yet: waiting"
        sleep $${RETRY_AFTER:-10}; exit 1
      fi
      {
        echo "port 26379"
        echo "bind $SENTINEL_BIND"
        echo "dir $NOMAD_TASK_DIR"
        echo "sentinel announce-ip $NOMAD_IP_sentinel"
        echo "sentinel announce-port 26379"
        echo "sentinel monitor $MASTER $primary 2"
        echo "sentinel down-after-milliseconds $MASTER $DOWN_AFTER_MS"
        # A Sentinel starts no new failover of the same primary within
        # twice this after the last one: 10 s lets a second host loss soon
        # after a failover be failed over too.
        echo "sentinel failover-timeout $MASTER 10000"
        echo "sentinel parallel-syncs $MASTER 1"
      } > "$conf.new" && mv "$conf.new" "$conf" || exit 1
      say "seeded: monitoring $MASTER at $primary"
    fi
    exec redis-server "$conf" --sentinel - < "$NOMAD_SECRETS_DIR/auth.conf"
  EOT
}

# ---- variables: only those this job uses (nomad/README.md lists them) ----

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["dc1"]
}

variable "redis_replicated" {
  description = "Sentinels run only with the replicated store (the cluster); a dev agent's single Redis has none."
  type        = bool
  default     = true
}

variable "redis_driver" {
  description = "docker (the official image, on the cluster) or exec (the host's redis-server, where no Docker engine runs)."
  type        = string
  default     = "docker"
}

variable "sentinel_node_pool" {
  description = "The Nomad node pool of the servers' clients, where the Sentinels run (ignition/server.yaml)."
  type        = string
  default     = "quorum"
}

variable "sentinel_down_after_ms" {
  description = "How long the primary must be unreachable before a Sentinel judges it down: the floor of a failover's time."
  type        = number
  default     = 5000
}
