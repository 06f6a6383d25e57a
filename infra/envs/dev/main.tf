# The dev pipeline on AWS. Build the zips first (cargo lambda build --release
# --output-format zip, laid out as <zip_dir>/<stage>/bootstrap.zip), then
#   terraform init -backend-config=backend.hcl
#   terraform apply -var code_version=$(git rev-parse HEAD)

provider "aws" {
  region = var.region
  default_tags {
    tags = merge(var.tags, { "sluice:env" = "dev" })
  }
}

data "aws_caller_identity" "this" {}

module "pipeline" {
  source = "../../modules/pipeline"

  name_prefix                        = var.name_prefix
  account_id                         = data.aws_caller_identity.this.account_id
  zip_paths                          = { for s in ["ingest", "curate", "profile"] : s => abspath("${coalesce(var.zip_dir, "${path.root}/../../../target/lambda")}/${s}/bootstrap.zip") }
  architecture                       = var.architecture
  code_version                       = var.code_version
  environment                        = var.environment
  stage_settings                     = var.stage_settings
  quarantine_expiration_days         = var.quarantine_expiration_days
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  log_retention_days                 = var.log_retention_days
  alarm_actions                      = var.alarm_actions
  force_destroy                      = false
}
