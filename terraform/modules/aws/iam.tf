# Consul cloud auto-join ("provider=aws tag_key=… tag_value=…") lists
# instances by tag: the hosts may describe instances, nothing else.

resource "aws_iam_role" "host" {
  name = "${var.cluster_name}-host"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy" "auto_join" {
  name = "consul-auto-join"
  role = aws_iam_role.host.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["ec2:DescribeInstances"], Resource = "*" }]
  })
}

resource "aws_iam_instance_profile" "host" {
  name = "${var.cluster_name}-host"
  role = aws_iam_role.host.name
}
