terraform {
  required_version = ">= 1.5.0"
  required_providers {
    ct = {
      source  = "poseidon/ct"
      version = "~> 0.14.0"
    }
  }
}
