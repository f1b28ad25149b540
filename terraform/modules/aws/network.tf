data "aws_availability_zones" "all" {
  state = "available"
}

resource "aws_vpc" "network" {
  cidr_block           = var.host_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.cluster_name, "loopstock-cluster" = var.cluster_name }
}

resource "aws_internet_gateway" "gateway" {
  vpc_id = aws_vpc.network.id
  tags   = { Name = var.cluster_name }
}

resource "aws_route_table" "default" {
  vpc_id = aws_vpc.network.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.gateway.id
  }
  tags = { Name = var.cluster_name }
}

# One public subnet per availability zone (up to three).
resource "aws_subnet" "public" {
  count                   = min(3, length(data.aws_availability_zones.all.names))
  vpc_id                  = aws_vpc.network.id
  availability_zone       = data.aws_availability_zones.all.names[count.index]
  cidr_block              = cidrsubnet(var.host_cidr, 4, count.index)
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.cluster_name}-public-${count.index}" }
}

resource "aws_route_table_association" "public" {
  count          = length(aws_subnet.public)
  route_table_id = aws_route_table.default.id
  subnet_id      = aws_subnet.public[count.index].id
}
