# The whole pipeline in a running LocalStack (`make localstack-up`, then
# `make deploy-local`), optionally with ghost stages beside it:
#
#   terraform apply -var 'ghost_stages=["curate"]'
#
# puts a ghost curate (modules/ghost) on the prod validated bucket's events,
# writing to the bucket <name_prefix>-ghost.

provider "aws" {
  region                      = var.region
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch = var.localstack_endpoint
    events     = var.localstack_endpoint
    iam        = var.localstack_endpoint
    lambda     = var.localstack_endpoint
    logs       = var.localstack_endpoint
    s3         = var.localstack_endpoint
    sns        = var.localstack_endpoint
    sqs        = var.localstack_endpoint
    sts        = var.localstack_endpoint
  }

  default_tags {
    tags = { "sluice:env" = "local" }
  }
}

locals {
  stages = ["ingest", "curate", "profile"]
  zip_paths = {
    for s in local.stages : s => abspath("${coalesce(var.zip_dir, "${path.root}/../../../target/lambda")}/${s}/bootstrap.zip")
  }
  ghost_zip_paths = {
    for s in local.stages : s => abspath("${coalesce(var.ghost_zip_dir, var.zip_dir, "${path.root}/../../../target/lambda")}/${s}/bootstrap.zip")
  }
  # LocalStack's account.
  account_id  = "000000000000"
  name_prefix = coalesce(var.name_prefix, terraform.workspace == "default" ? "sluice-local" : "sluice-${terraform.workspace}")
}

module "pipeline" {
  source = "../../modules/pipeline"

  name_prefix    = local.name_prefix
  account_id     = local.account_id
  zip_paths      = local.zip_paths
  architecture   = var.architecture
  code_version   = var.code_version
  environment    = var.environment
  stage_settings = var.stage_settings
  force_destroy  = true
  # LocalStack expires nothing, and the provider waits ~1 min per bucket on it.
  lifecycle_rules = false
}

module "ghost" {
  source = "../../modules/ghost"
  count  = length(var.ghost_stages) > 0 ? 1 : 0

  name_prefix     = "${local.name_prefix}-ghost"
  account_id      = local.account_id
  stages          = var.ghost_stages
  prod_buckets    = module.pipeline.buckets
  zip_paths       = { for s in var.ghost_stages : s => local.ghost_zip_paths[s] }
  architecture    = var.architecture
  code_version    = var.ghost_code_version
  environment     = var.environment
  stage_settings  = var.stage_settings
  lifecycle_rules = false
}
