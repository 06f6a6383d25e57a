terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
  # Partial configuration: give bucket/key/region/dynamodb_table (or
  # use_lockfile) at init, e.g.
  #   terraform init -backend-config=backend.hcl
  # with backend.hcl as in backend.hcl.example. Each branch is a workspace, kept
  # under <workspace_key_prefix>/<workspace>/<key> in that bucket.
  backend "s3" {}
}
