terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
    ct = {
      source  = "poseidon/ct"
      version = "~> 0.14.0"
    }
    # Used by ../secrets and ../provision: narrowed here, where a root
    # calls the platform, to the releases make test-terraform validates.
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0.6"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6.3"
    }
    null = {
      source  = "hashicorp/null"
      version = "~> 3.2.4"
    }
  }
}
