# Only what is needed: SSH and the HTTPS APIs/UIs from ssh_cidrs; the
# agents' ports between the cluster's own hosts; Nomad's dynamic ports
# between clients (services talk to each other there).

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
  ingress {
    description = "Nomad dynamic ports: tasks between hosts"
    protocol    = "tcp"
    from_port   = 20000
    to_port     = 32000
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
