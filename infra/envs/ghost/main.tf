# Ghost stages of a branch build beside prod (see modules/ghost), one
# Terraform workspace per branch:
#
#   terraform workspace select -or-create feature-x
#   terraform apply -var 'stages=["curate"]' -var code_version=$(git rev-parse HEAD)
#
# Resources are named <name_prefix>-ghost-<workspace>-..., the ghost bucket
# <name_prefix>-ghost-<workspace>. `terraform destroy` in the workspace removes
# it all (the ghost bucket with its contents).

provider "aws" {
  region = var.region

  # Only for plan-time checks (make tf-check): no credentials, no AWS calls.
  access_key                  = var.offline_plan ? "offline" : null
  secret_key                  = var.offline_plan ? "offline" : null
  skip_credentials_validation = var.offline_plan
  skip_metadata_api_check     = var.offline_plan
  skip_requesting_account_id  = var.offline_plan
  skip_region_validation      = var.offline_plan

  default_tags {
    tags = merge(var.tags, { "sluice:env" = "ghost", "sluice:branch" = terraform.workspace })
  }
}

data "aws_caller_identity" "this" {
  count = var.account_id == null ? 1 : 0
}

data "aws_partition" "this" {}

locals {
  account_id = coalesce(var.account_id, try(data.aws_caller_identity.this[0].account_id, null))
  partition  = data.aws_partition.this.partition

  # Workspace names may hold characters (or a length) that names cannot.
  branch      = trim(substr(replace(lower(terraform.workspace), "/[^a-z0-9-]+/", "-"), 0, 26), "-")
  name_prefix = "${var.name_prefix}-ghost-${local.branch}"

  prod_buckets = {
    for role in ["landing", "validated", "curated", "profiles", "quarantine"] :
    role => lookup(var.prod_buckets, role, "${var.prod_name_prefix}-${role}")
  }

  # What a ghost must never write: the prod buckets, queues, DLQs, topic and
  # functions. Exposed as an output for infra/checks/ghost_iam.py.
  prod_resource_arns = concat(
    flatten([for b in values(local.prod_buckets) : ["arn:${local.partition}:s3:::${b}", "arn:${local.partition}:s3:::${b}/*"]]),
    flatten([for s in ["ingest", "curate", "profile"] : [
      "arn:${local.partition}:sqs:${var.region}:${local.account_id}:${var.prod_name_prefix}-${s}",
      "arn:${local.partition}:sqs:${var.region}:${local.account_id}:${var.prod_name_prefix}-${s}-dlq",
      "arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${var.prod_name_prefix}-${s}",
      "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${var.prod_name_prefix}-${s}",
    ]]),
    ["arn:${local.partition}:sns:${var.region}:${local.account_id}:${var.prod_name_prefix}-alerts"],
  )
}

check "ghost_names_are_not_prod_names" {
  assert {
    condition     = !contains(values(local.prod_buckets), local.name_prefix) && !startswith("${local.name_prefix}-", "${var.prod_name_prefix}-")
    error_message = "The ghost prefix ${local.name_prefix} collides with prod (${var.prod_name_prefix})."
  }
}

module "ghost" {
  source = "../../modules/ghost"

  name_prefix    = local.name_prefix
  account_id     = local.account_id
  stages         = var.stages
  prod_buckets   = local.prod_buckets
  zip_paths      = { for s in var.stages : s => abspath("${coalesce(var.zip_dir, "${path.root}/../../../target/lambda")}/${s}/bootstrap.zip") }
  architecture   = var.architecture
  code_version   = var.code_version
  environment    = var.environment
  stage_settings = var.stage_settings
  force_destroy  = true
}
