# Only what is needed. Group "cluster", on every host: SSH and the HTTPS
# APIs/UIs from ssh_cidrs, the agents' ports between the cluster's own
# hosts, egress. Groups "servers" and "clients", one per role: the ports
# the jobs use (nomad/*.nomad.hcl), open only from the hosts that use them.

resource "aws_security_group" "cluster" {
  name        = "${var.cluster_name}-cluster"
  description = "loopstock ${var.cluster_name}: hosts of the cluster"
  vpc_id      = aws_vpc.network.id
  tags        = { Name = "${var.cluster_name}-cluster" }

  ingress {
    description = "SSH from operators"
    protocol    = "tcp"
    from_port   = 22
    to_port     = 22
    cidr_blocks = var.ssh_cidrs
  }
  ingress {
    description = "Consul HTTPS API and UI from operators"
    protocol    = "tcp"
    from_port   = 8501
    to_port     = 8501
    cidr_blocks = var.ssh_cidrs
  }
  ingress {
    description = "Nomad HTTPS API and UI from operators"
    protocol    = "tcp"
    from_port   = 4646
    to_port     = 4646
    cidr_blocks = var.ssh_cidrs
  }
  ingress {
    description = "Consul server RPC, serf LAN (TCP), gRPC TLS between hosts"
    protocol    = "tcp"
    from_port   = 8300
    to_port     = 8301
    self        = true
  }
  ingress {
    description = "Consul serf LAN (UDP) between hosts"
    protocol    = "udp"
    from_port   = 8301
    to_port     = 8301
    self        = true
  }
  ingress {
    description = "Consul HTTPS and gRPC TLS between hosts (auto-encrypt)"
    protocol    = "tcp"
    from_port   = 8501
    to_port     = 8503
    self        = true
  }
  ingress {
    description = "Nomad HTTP, RPC and serf (TCP) between hosts"
    protocol    = "tcp"
    from_port   = 4646
    to_port     = 4648
    self        = true
  }
  ingress {
    description = "Nomad serf (UDP) between hosts"
    protocol    = "udp"
    from_port   = 4648
    to_port     = 4648
    self        = true
  }
  egress {
    description = "Updates, images, artifacts"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# The servers' jobs: the Redis Sentinels alone (node pool "quorum", static
# port 26379). The servers need no dynamic port from anyone.
resource "aws_security_group" "servers" {
  name        = "${var.cluster_name}-servers"
  description = "loopstock ${var.cluster_name}: servers (Redis Sentinels)"
  vpc_id      = aws_vpc.network.id
  tags        = { Name = "${var.cluster_name}-servers" }
}

# The clients' jobs (node pool "default"): Redis on static port 6379, and
# every other task (NSQ, the services, monitoring) on Nomad's dynamic ports.
resource "aws_security_group" "clients" {
  name        = "${var.cluster_name}-clients"
  description = "loopstock ${var.cluster_name}: clients (Redis, NSQ, services, monitoring)"
  vpc_id      = aws_vpc.network.id
  tags        = { Name = "${var.cluster_name}-clients" }
}

# The role groups' rules are resources of their own: the two groups name
# each other, which inline rules cannot do (a dependency cycle), and a group
# must not mix inline rules with rule resources.

resource "aws_vpc_security_group_ingress_rule" "sentinel_from_clients" {
  security_group_id            = aws_security_group.servers.id
  description                  = "Redis Sentinel from clients (integer-api, the Redis start script)"
  ip_protocol                  = "tcp"
  from_port                    = 26379
  to_port                      = 26379
  referenced_security_group_id = aws_security_group.clients.id
}

resource "aws_vpc_security_group_ingress_rule" "sentinel_from_servers" {
  security_group_id            = aws_security_group.servers.id
  description                  = "Redis Sentinel from the other Sentinels"
  ip_protocol                  = "tcp"
  from_port                    = 26379
  to_port                      = 26379
  referenced_security_group_id = aws_security_group.servers.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_clients" {
  security_group_id            = aws_security_group.clients.id
  description                  = "Redis from clients (integer-api, replication, the Redis start script)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.clients.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_servers" {
  security_group_id            = aws_security_group.clients.id
  description                  = "Redis from the Sentinels on the servers"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.servers.id
}

resource "aws_vpc_security_group_ingress_rule" "dynamic_from_clients" {
  security_group_id            = aws_security_group.clients.id
  description                  = "Nomad dynamic ports from clients (services, nsqd, nsqlookupd, Prometheus scraping)"
  ip_protocol                  = "tcp"
  from_port                    = 20000
  to_port                      = 32000
  referenced_security_group_id = aws_security_group.clients.id
}
