resource "aws_instance" "client" {
  count                  = var.client_count
  ami                    = data.aws_ami.flatcar.image_id
  instance_type          = var.client_type
  subnet_id              = aws_subnet.public[count.index % length(aws_subnet.public)].id
  vpc_security_group_ids = [aws_security_group.cluster.id, aws_security_group.clients.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  user_data              = module.ignition.client

  root_block_device {
    volume_type = "gp3"
    volume_size = var.disk_size
    encrypted   = true
  }

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = { Name = "${var.cluster_name}-client-${count.index}", "loopstock-cluster" = var.cluster_name, "loopstock-role" = "client" }

  # As for the servers: rolled one at a time, so the jobs always have room.
  lifecycle {
    ignore_changes = [ami, user_data]
  }
}
