resource "aws_instance" "server" {
  count                  = var.server_count
  ami                    = data.aws_ami.flatcar.image_id
  instance_type          = var.server_type
  subnet_id              = aws_subnet.public[count.index % length(aws_subnet.public)].id
  vpc_security_group_ids = [aws_security_group.cluster.id, aws_security_group.servers.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  user_data              = module.ignition.servers[count.index]

  root_block_device {
    volume_type = "gp3"
    volume_size = var.disk_size
    encrypted   = true
  }

  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers cannot reach the metadata service
  }

  tags = { Name = "${var.cluster_name}-server-${count.index}", "loopstock-cluster" = var.cluster_name, "loopstock-role" = "server" }

  # Neither a newer AMI nor an edited Butane config replaces a running host:
  # replacing every server in one apply would lose the Raft state of Consul
  # and Nomad. Flatcar updates itself in place (one node at a time); an
  # operator rolls a config change host by host with `tofu apply -replace`
  # (docs/provisioning.md). New hosts start from the newest image and config.
  lifecycle {
    ignore_changes = [ami, user_data]
  }
}
