# Redis, the window store: AOF on with fsync always (a window acknowledged
# to the averager is on disk), data in each client's host volume "redis".
#
# The cluster (redis_replicated, the default): group "replicas", a primary
# and a replica on two distinct clients, and the Sentinels of the
# redis-sentinel job on the servers, which fail over to the replica when
# the primary's host is lost (docs/design.md §4). Fixed ports (6379), so a
# Redis keeps the address the Sentinels know it by across restarts. Each
# Redis seeds its config once into its volume and Redis rewrites it from
# then on (its replicaof, after a failover); an empty disk (a replaced
# host) starts as a replica of the primary the Sentinels name and
# resyncs: an empty Redis never starts as primary next to one with data.
#
# A dev agent (redis_replicated = false): one Redis, pinned to
# var.redis_node, the client whose volume holds the data (groups "redis"
# and "redis-host": the official image under Docker, the host's
# redis-server under exec).

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

  group "replicas" {
    count = var.redis_replicated ? 2 : 0

    # One copy per host: two copies on one host survive nothing.
    constraint {
      distinct_hosts = true
    }

    # No max_client_disconnect, unlike the single Redis: the Sentinels, not
    # Nomad, decide which copy serves. A lost client's allocation is lost,
    # and its replacement waits for a client without a copy: the same host
    # back, or a replaced host (a new node). Held unknown, the old node's
    # allocation would keep a replaced host from ever getting one.

    volume "data" {
      type   = "host"
      source = "redis"
    }

    network {
      port "redis" {
        static = 6379
        to     = 6379
      }
    }

    restart {
      attempts = 30
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    # TCP, not a script check (see group "redis-host"). Which one is the
    # primary is the Sentinels' answer, not Consul's: integer-api asks them.
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

      dynamic "config" {
        for_each = var.redis_driver == "docker" ? ["docker"] : []
        content {
          image      = "redis:7.0"
          ports      = ["redis"]
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
        REDIS_BIND = var.redis_driver == "docker" ? "0.0.0.0" : "${NOMAD_IP_redis}"
        MASTER     = "loopstock"
        # The start script's redis-cli: with consul_tls, TLS with this
        # Redis's certificate, as the store's replica user (ROLE, and the
        # Sentinels' get-master-addr-by-name).
        REDIS_CLI_ARGS = var.consul_tls ? "--tls --cert ${NOMAD_SECRETS_DIR}/leaf.pem --key ${NOMAD_SECRETS_DIR}/leaf.pem --cacert ${NOMAD_SECRETS_DIR}/roots.pem --user replica" : ""
      }

      # Read once at each start; a change of Sentinels or peers does not
      # restart Redis.
      template {
        data        = local.redis_start
        destination = "local/start.sh"
        change_mode = "noop"
      }

      # The secrets: fed to redis-server on stdin, so they are on no command
      # line (a config rewrite, at a failover, copies masterauth into the
      # volume's redis.conf, 0600 like the data beside it). With
      # consul_tls: TLS only, client certificates required, the ACL users
      # of internal/redisacl (the default user off, in an aclfile that no
      # rewrite copies), replication over TLS as the replica user.
      template {
        data        = var.consul_tls ? local.redis_tls_conf : local.redis_password_conf
        destination = "secrets/auth.conf"
        perms       = "0600"
        change_mode = "restart"
        splay       = "30s"
      }
      template {
        data        = var.consul_tls ? local.redis_cli_tls_auth : local.redis_cli_password_auth
        destination = "secrets/redis.env"
        perms       = "0600"
        env         = true
        change_mode = "restart"
        splay       = "30s"
      }

      # Who may do what: the aclfile, outside the config Redis rewrites.
      dynamic "template" {
        for_each = var.consul_tls ? ["acl"] : []
        content {
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/redis" }}{{ .redis_acl }}{{ end }}
          EOT
          destination = "secrets/users.acl"
          perms       = "0600"
          change_mode = "restart"
          splay       = "30s"
        }
      }
      # Redis reads its certificate when it starts: a renewal or a root
      # rotation restarts it, the two copies at different moments within
      # the splay (a restart is shorter than the Sentinels' down-after: no
      # failover; integer-api retries the writes of that second).
      dynamic "template" {
        for_each = var.consul_tls ? ["leaf"] : []
        content {
          data        = "{{ with caLeaf \"redis\" }}{{ .CertPEM }}{{ .PrivateKeyPEM }}{{ end }}"
          destination = "secrets/leaf.pem"
          perms       = "0600"
          change_mode = "restart"
          splay       = "30s"
        }
      }
      dynamic "template" {
        for_each = var.consul_tls ? ["roots"] : []
        content {
          data        = "{{ range caRoots }}{{ .RootCertPEM }}{{ end }}"
          destination = "secrets/roots.pem"
          change_mode = "restart"
          splay       = "30s"
        }
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

  group "redis" {
    count = !var.redis_replicated && var.redis_driver == "docker" ? 1 : 0

    # Only the client whose volume holds the data (see the top of the file);
    # only for a single Redis, so the replicated cluster needs no redis_node.
    dynamic "constraint" {
      for_each = var.redis_replicated ? [] : [var.redis_node]
      content {
        attribute = "${node.unique.name}"
        value     = constraint.value
      }
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
        perms       = "0600"
        change_mode = "restart"
      }

      # redis-cli in the check authenticates with it.
      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/redis" }}REDISCLI_AUTH={{ .redis_password }}{{ end }}
        EOT
        destination = "secrets/redis.env"
        perms       = "0600"
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
    count = !var.redis_replicated && var.redis_driver != "docker" ? 1 : 0

    # Only the client whose volume holds the data (see the top of the file);
    # only for a single Redis, so the replicated cluster needs no redis_node.
    dynamic "constraint" {
      for_each = var.redis_replicated ? [] : [var.redis_node]
      content {
        attribute = "${node.unique.name}"
        value     = constraint.value
      }
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
        perms       = "0600"
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

variable "consul_tls" {
  description = "The local Consul agent speaks HTTPS with ACLs (the cluster): the tasks get its CA and their ACL token from the job's Nomad variable (consul_ca, consul_token). false on a dev agent: no Nomad variable for Consul."
  type        = bool
  default     = true
}

variable "redis_replicated" {
  description = "A primary and a replica on two clients with Sentinels (the cluster), or one Redis on redis_node (a dev agent)."
  type        = bool
  default     = true
}

variable "redis_node" {
  description = "Without redis_replicated: name of the Nomad client whose host volume redis holds Redis's data (nomad node status). Redis runs only there; empty places it nowhere."
  type        = string
  default     = ""
}

variable "redis_driver" {
  description = "docker (the official image, on the cluster) or exec (the host's redis-server, on a dev agent)."
  type        = string
  default     = "docker"
}

locals {
  redis_password_conf     = <<-EOT
    {{ with nomadVar "nomad/jobs/redis" }}requirepass {{ .redis_password }}
    masterauth {{ .redis_password }}{{ end }}
  EOT
  redis_cli_password_auth = <<-EOT
    {{ with nomadVar "nomad/jobs/redis" }}REDISCLI_AUTH={{ .redis_password }}{{ end }}
  EOT
  # consul_tls: read after the seeded redis.conf, whose "port 6379"
  # becomes the TLS port.
  redis_tls_conf     = <<-EOT
    port 0
    tls-port 6379
    tls-cert-file {{ env "NOMAD_SECRETS_DIR" }}/leaf.pem
    tls-key-file {{ env "NOMAD_SECRETS_DIR" }}/leaf.pem
    tls-ca-cert-file {{ env "NOMAD_SECRETS_DIR" }}/roots.pem
    tls-auth-clients yes
    tls-replication yes
    tls-protocols "TLSv1.2 TLSv1.3"
    aclfile {{ env "NOMAD_SECRETS_DIR" }}/users.acl
    {{ with nomadVar "nomad/jobs/redis" }}masteruser replica
    masterauth {{ .redis_replica_password }}{{ end }}
  EOT
  redis_cli_tls_auth = <<-EOT
    {{ with nomadVar "nomad/jobs/redis" }}REDISCLI_AUTH={{ .redis_replica_password }}{{ end }}
  EOT
  # A replicated Redis's start (group "replicas"). The config is seeded
  # once into the volume; from then on Redis rewrites it itself (Sentinel
  # sets its replicaof at a failover), so a restart comes back in the role
  # it last had. An empty volume (the first start, or a replaced host)
  # asks the Sentinels which Redis is the primary and starts as its
  # replica; it never starts as primary next to a Redis that answers.
  redis_start = <<-EOT
    #!/bin/sh
    set -u
    conf=/data/redis.conf
    me="$NOMAD_IP_redis 6379"
    sentinels="{{ range service "redis-sentinel" }}{{ .Address }}:{{ .Port }} {{ end }}"
    peers="{{ range service "redis|any" }}{{ .Address }}:{{ .Port }} {{ end }}"
    umask 077
    say() { echo "loopstock-redis: $*" >&2; }
    if [ ! -s "$conf" ]; then
      primary=""
      for s in $sentinels; do
        a=$(redis-cli $${REDIS_CLI_ARGS:-} --no-auth-warning -h "$${s%:*}" -p "$${s#*:}" sentinel get-master-addr-by-name "$MASTER" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
        case "$a" in *" "*) primary="$a"; break ;; esac
      done
      if [ -n "$primary" ] && [ "$primary" = "$me" ]; then
        say "the Sentinels name this Redis ($me) the primary, but its disk is empty: not starting, so that they fail over to the replica that holds the data"
        sleep $${RETRY_AFTER:-15}; exit 1
      fi
      if [ -z "$primary" ]; then
        # No Sentinel answers: the store's first start, or every Sentinel
        # lost. A peer that answers decides: follow it if it is the
        # primary, wait otherwise. None: the first allocation starts as
        # the primary, the other waits for it.
        for p in $peers; do
          [ "$p" = "$${me% *}:6379" ] && continue
          role=$(redis-cli $${REDIS_CLI_ARGS:-} --no-auth-warning -h "$${p%:*}" -p "$${p#*:}" role 2>/dev/null | head -n 1)
          case "$role" in
            master) primary="$${p%:*} $${p#*:}" ;;
            slave) say "no Sentinel answers and the peer $p is a replica: waiting for a primary"; sleep $${RETRY_AFTER:-15}; exit 1 ;;
          esac
        done
        if [ -z "$primary" ] && [ "$NOMAD_ALLOC_INDEX" != 0 ]; then
          say "no Sentinel and no peer answer: waiting for the first allocation to start as the primary"
          sleep $${RETRY_AFTER:-15}; exit 1
        fi
      fi
      {
        echo "port 6379"
        echo "bind $REDIS_BIND"
        echo "dir /data"
        echo "appendonly yes"
        echo "appendfsync always"
        echo 'save ""'
        echo "replica-announce-ip $NOMAD_IP_redis"
        echo "replica-announce-port 6379"
        if [ -n "$primary" ]; then echo "replicaof $primary"; fi
      } > "$conf.new" && mv "$conf.new" "$conf" || exit 1
      if [ -n "$primary" ]; then say "empty disk: starting as a replica of $primary"; else say "empty disk and no other Redis: starting as the primary"; fi
    fi
    exec redis-server "$conf" - < "$NOMAD_SECRETS_DIR/auth.conf"
  EOT
}
