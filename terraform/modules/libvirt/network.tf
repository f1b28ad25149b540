resource "libvirt_network" "cluster" {
  name      = var.cluster_name
  mode      = "nat"
  domain    = "${var.cluster_name}.local"
  addresses = [var.network_cidr]
  autostart = true
  dhcp {
    enabled = true
  }
  dns {
    enabled    = true
    local_only = true
  }
}
