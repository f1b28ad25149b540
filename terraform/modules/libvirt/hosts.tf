resource "libvirt_volume" "base" {
  name   = "${var.cluster_name}-flatcar-base.qcow2"
  pool   = var.pool
  source = var.os_image
  format = "qcow2"
}

resource "libvirt_volume" "server" {
  count          = var.server_count
  name           = "${var.cluster_name}-server-${count.index}.qcow2"
  pool           = var.pool
  base_volume_id = libvirt_volume.base.id
  size           = var.disk_size * 1024 * 1024 * 1024
  format         = "qcow2"
}

resource "libvirt_volume" "client" {
  count          = var.client_count
  name           = "${var.cluster_name}-client-${count.index}.qcow2"
  pool           = var.pool
  base_volume_id = libvirt_volume.base.id
  size           = var.disk_size * 1024 * 1024 * 1024
  format         = "qcow2"
}

resource "libvirt_domain" "server" {
  count           = var.server_count
  name            = "${var.cluster_name}-server-${count.index}"
  vcpu            = var.vcpus
  memory          = var.server_memory
  coreos_ignition = libvirt_ignition.server[count.index].id
  fw_cfg_name     = "opt/org.flatcar-linux/config"

  disk {
    volume_id = libvirt_volume.server[count.index].id
  }

  network_interface {
    network_id     = libvirt_network.cluster.id
    hostname       = "${var.cluster_name}-server-${count.index}"
    addresses      = [local.server_ips[count.index]]
    wait_for_lease = true
  }

  console {
    type        = "pty"
    target_type = "serial"
    target_port = "0"
  }

  # A changed config replaces no running host (Raft state): roll them one
  # at a time with `tofu apply -replace` (docs/provisioning.md).
  lifecycle {
    ignore_changes = [coreos_ignition]
  }
}

resource "libvirt_domain" "client" {
  count           = var.client_count
  name            = "${var.cluster_name}-client-${count.index}"
  vcpu            = var.vcpus
  memory          = var.client_memory
  coreos_ignition = libvirt_ignition.client[count.index].id
  fw_cfg_name     = "opt/org.flatcar-linux/config"

  disk {
    volume_id = libvirt_volume.client[count.index].id
  }

  network_interface {
    network_id     = libvirt_network.cluster.id
    hostname       = "${var.cluster_name}-client-${count.index}"
    addresses      = [local.client_ips[count.index]]
    wait_for_lease = true
  }

  console {
    type        = "pty"
    target_type = "serial"
    target_port = "0"
  }

  lifecycle {
    ignore_changes = [coreos_ignition]
  }
}
