terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
  # Partial configuration: terraform init -backend-config=backend.hcl
  # (see backend.hcl.example).
  backend "s3" {}
}
