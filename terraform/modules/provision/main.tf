# Copies each host's secrets over SSH once it has booted (as Typhoon does),
# so that no secret is in user data (readable from the instance metadata):
# TLS certificates, gossip keys and ACL tokens go to /etc/loopstock/secrets
# (root only) and the agents' secrets.hcl files; then the "ready" file
# starts Consul and Nomad (see ignition/snippets/agents.yaml).

locals {
  s      = var.secrets
  tokens = { for k, v in var.secrets.tokens : k => v.secret }

  common = {
    "ca.pem"            = local.s.ca_cert
    "cli.pem"           = local.s.certs["cli"].cert
    "cli-key.pem"       = local.s.certs["cli"].key
    "maintenance.token" = local.tokens["maintenance"]
  }
  consul_secrets = <<-EOT
    encrypt = "${local.s.consul_gossip_key}"
    acl {
      tokens {
        agent = "${local.tokens["agent"]}"
      }
    }
  EOT

  server_files = [for i, _ in var.server_hosts : merge(local.common, {
    "consul.pem"     = local.s.certs["consul-server-${i}"].cert
    "consul-key.pem" = local.s.certs["consul-server-${i}"].key
    "nomad.pem"      = local.s.certs["nomad-server-${i}"].cert
    "nomad-key.pem"  = local.s.certs["nomad-server-${i}"].key
    "consul.hcl"     = local.consul_secrets
    "nomad.hcl"      = <<-EOT
      server {
        encrypt = "${local.s.nomad_gossip_key}"
      }
      consul {
        token = "${local.tokens["nomad"]}"
      }
    EOT
    },
    # The first server bootstraps the ACLs: it alone gets the bootstrap
    # secrets and the tokens to create (a for with a condition, so both
    # cases are objects and merge takes them).
    { for k, v in local.bootstrap_files : k => v if i == 0 },
  )]

  bootstrap_files = merge(
    { "consul-bootstrap.token" = local.tokens["consul-bootstrap"], "nomad-bootstrap.token" = local.tokens["nomad-bootstrap"] },
    { for name in ["agent", "maintenance", "nomad", "loopstock"] : "${name}.token" => local.tokens[name] },
    { for name in ["agent", "maintenance", "nomad", "loopstock"] : "${name}.accessor" => var.secrets.tokens[name].accessor },
  )

  client_files = [for i, _ in var.client_hosts : merge(local.common, {
    "nomad.pem"     = local.s.certs["nomad-client-${i}"].cert
    "nomad-key.pem" = local.s.certs["nomad-client-${i}"].key
    "consul.hcl"    = local.consul_secrets
    "nomad.hcl"     = <<-EOT
      consul {
        token = "${local.tokens["nomad"]}"
      }
    EOT
  })]

  # A script that writes every file (root only) and signals readiness.
  install = [for files in concat(local.server_files, local.client_files) : join("\n", concat(
    ["#!/bin/bash", "set -euo pipefail", "umask 077", "mkdir -p /etc/loopstock/secrets /etc/consul.d /etc/nomad.d"],
    [for name, content in files : "echo '${base64encode(content)}' | base64 -d > /etc/loopstock/secrets/${name}"],
    [
      "install -m 0640 -g consul /etc/loopstock/secrets/consul.hcl /etc/consul.d/secrets.hcl",
      "install -m 0600 /etc/loopstock/secrets/nomad.hcl /etc/nomad.d/secrets.hcl",
      "chgrp consul /etc/loopstock/secrets /etc/loopstock/secrets/ca.pem /etc/loopstock/secrets/consul*.pem 2>/dev/null || true",
      "chmod 0750 /etc/loopstock/secrets && chmod 0640 /etc/loopstock/secrets/ca.pem /etc/loopstock/secrets/consul*.pem 2>/dev/null || true",
      "touch /etc/loopstock/secrets/ready",
    ],
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
