# Copies each host's secrets over SSH once it has booted (as Typhoon does),
# so that no secret is in user data (readable from the instance metadata):
# the files go to /etc/loopstock/secrets (root only), then the "ready"
# marker makes the host install them and start, or after a rotation
# restart, its agents (loopstock-secrets in ignition/snippets/agents.yaml).
# The same files as platform/flatcar's Secrets.Files, which the Vagrant
# cluster and the cluster test deliver.

locals {
  s      = var.secrets
  tokens = { for k, v in var.secrets.tokens : k => v.secret }

  common = merge(
    {
      "ca.pem"            = local.s.ca_cert
      "cli.pem"           = local.s.certs["cli"].cert
      "cli-key.pem"       = local.s.certs["cli"].key
      "consul-gossip.key" = local.s.consul_gossip_key
    },
    { for name in ["agent", "default", "nomad", "maintenance"] : "consul-${name}.token" => local.tokens[name] },
  )

  server_files = [for i, _ in var.server_hosts : merge(local.common, {
    "consul.pem"             = local.s.certs["consul-server-${i}"].cert
    "consul-key.pem"         = local.s.certs["consul-server-${i}"].key
    "nomad.pem"              = local.s.certs["nomad-server-${i}"].cert
    "nomad-key.pem"          = local.s.certs["nomad-server-${i}"].key
    "nomad-gossip.key"       = local.s.nomad_gossip_key
    "consul-bootstrap.token" = local.tokens["consul-bootstrap"]
    },
    # The first server creates the ACLs: it alone gets Nomad's bootstrap
    # secret and the tokens to create (a for with a condition, so both
    # cases are objects and merge takes them).
    { for k, v in local.bootstrap_files : k => v if i == 0 },
  )]

  bootstrap_files = merge(
    { "nomad-bootstrap.token" = local.tokens["nomad-bootstrap"] },
    # The jobs' tokens: no host uses them, the first server creates them.
    { for name in ["loopstock", "prometheus"] : "consul-${name}.token" => local.tokens[name] },
    { for name in ["agent", "default", "nomad", "maintenance", "loopstock", "prometheus"] : "consul-${name}.accessor" => var.secrets.tokens[name].accessor },
  )

  client_files = [for i, _ in var.client_hosts : merge(local.common, {
    "consul.pem"     = local.s.certs["consul-client-${i}"].cert
    "consul-key.pem" = local.s.certs["consul-client-${i}"].key
    "nomad.pem"      = local.s.certs["nomad-client-${i}"].cert
    "nomad-key.pem"  = local.s.certs["nomad-client-${i}"].key
  })]

  # A script that writes every file (root only) and then the marker.
  install = [for files in concat(local.server_files, local.client_files) : join("\n", concat(
    ["#!/bin/bash", "set -euo pipefail", "umask 077", "mkdir -p /etc/loopstock/secrets"],
    [for name, content in files : "echo '${base64encode(content)}' | base64 -d > /etc/loopstock/secrets/${name}"],
    ["touch /etc/loopstock/secrets/ready", ""],
  ))]
  hosts = concat(var.server_hosts, var.client_hosts)
}

resource "null_resource" "secrets" {
  count = length(local.hosts)

  # A new certificate or token (or host) copies the files again.
  triggers = {
    host    = local.hosts[count.index]
    content = sha256(local.install[count.index])
  }

  connection {
    type    = "ssh"
    host    = local.hosts[count.index]
    user    = "core"
    timeout = "15m"
  }

  provisioner "file" {
    content     = local.install[count.index]
    destination = "/home/core/install-secrets"
  }

  provisioner "remote-exec" {
    inline = ["sudo bash /home/core/install-secrets && rm -f /home/core/install-secrets"]
  }
}
