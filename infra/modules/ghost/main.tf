# Ghost copies of some stages, fed by a fork of the prod event flow.
#
# Each ghost stage has its own EventBridge rule, queue, DLQ, role and function
# (SLUICE_MODE=ghost). Everything a ghost writes goes to ONE ghost bucket,
# named after name_prefix, under per-stage prefixes:
#
#   s3://<ghost>/validated/             ghost ingest output   (prod: <p>-validated)
#   s3://<ghost>/curated/               ghost curate output   (prod: <p>-curated)
#   s3://<ghost>/profiles/              ghost profile output  (prod: <p>-profiles)
#   s3://<ghost>/quarantine/<stage>/    rejected rows
#
# so `sluice ghost diff` compares s3://<p>-curated/ with s3://<ghost>/curated/.
# A ghost stage reads the ghost output of the stage before it when that stage
# is ghosted too, and prod otherwise, so a forked flow never loads prod twice.
# Its role reads prod and writes only the ghost bucket, its own DLQ and (for
# profile) the ghost alert topic: infra/checks/ghost_iam.py proves it on the plan.

data "aws_partition" "this" {}
data "aws_region" "this" {}

locals {
  ghosted = { for s in ["ingest", "curate", "profile"] : s => contains(var.stages, s) }
  bucket  = var.name_prefix

  output_prefix = { ingest = "validated/", curate = "curated/", profile = "profiles/" }

  # Where each ghost stage reads: the ghost output upstream if that is ghosted.
  input = {
    ingest = { bucket = var.prod_buckets.landing, prefix = "raw/" }
    curate = (local.ghosted.ingest
      ? { bucket = local.bucket, prefix = local.output_prefix.ingest }
    : { bucket = var.prod_buckets.validated, prefix = "" })
    profile = (local.ghosted.curate
      ? { bucket = local.bucket, prefix = local.output_prefix.curate }
    : { bucket = var.prod_buckets.curated, prefix = "" })
  }
  # Profile also reads the validated object a curated file came from (which
  # is ghost output only when both ingest and curate are ghosted).
  validated_seen_by_profile = (local.ghosted.ingest && local.ghosted.curate
    ? { bucket = local.bucket, prefix = local.output_prefix.ingest }
  : { bucket = var.prod_buckets.validated, prefix = "" })

  prod_bucket_names = sort(distinct(values(var.prod_buckets)))

  alert_topic_name = "${var.name_prefix}-alerts"
  alert_topic_arn  = "arn:${data.aws_partition.this.partition}:sns:${data.aws_region.this.name}:${var.account_id}:${local.alert_topic_name}"

  tags = merge(var.tags, { "sluice:ghost" = var.name_prefix })
}

module "bucket" {
  source = "../bucket"

  name                               = local.bucket
  expiration_days                    = var.expiration_days
  noncurrent_version_expiration_days = 1
  lifecycle_rules                    = var.lifecycle_rules
  force_destroy                      = var.force_destroy
  tags                               = local.tags
}

resource "aws_sns_topic" "alerts" {
  count = local.ghosted.profile ? 1 : 0
  name  = local.alert_topic_name
  tags  = local.tags
}

module "stage" {
  source   = "../stage"
  for_each = var.stages

  name         = "${var.name_prefix}-${each.key}"
  stage        = each.key
  account_id   = var.account_id
  zip_path     = var.zip_paths[each.key]
  architecture = var.architecture
  code_version = var.code_version
  mode         = "ghost"
  prod_buckets = local.prod_bucket_names

  input_bucket = local.input[each.key].bucket
  input_prefix = local.input[each.key].prefix
  event_suffix = each.key == "ingest" ? "" : ".parquet"
  upstream     = lookup({ curate = "ingest", profile = "curate" }, each.key, null)
  # From the module output: the ghost bucket exists before anything writes it.
  output_bucket     = module.bucket.name
  output_prefix     = local.output_prefix[each.key]
  quarantine_bucket = module.bucket.name
  quarantine_prefix = "quarantine/${each.key}/"
  extra_reads       = each.key == "profile" ? [local.validated_seen_by_profile] : []
  alert_topic_arn   = each.key == "profile" ? local.alert_topic_arn : null

  memory_size             = try(var.stage_settings[each.key].memory_size, null)
  timeout                 = try(var.stage_settings[each.key].timeout, null)
  ephemeral_storage       = try(var.stage_settings[each.key].ephemeral_storage, null)
  batch_size              = try(var.stage_settings[each.key].batch_size, null)
  maximum_batching_window = try(var.stage_settings[each.key].maximum_batching_window, null)
  maximum_concurrency     = try(var.stage_settings[each.key].maximum_concurrency, null)
  max_receive_count       = try(var.stage_settings[each.key].max_receive_count, null)
  alias_version           = try(var.stage_settings[each.key].alias_version, null)
  enabled                 = try(var.stage_settings[each.key].enabled, null)
  environment             = merge(var.environment, try(var.stage_settings[each.key].environment, {}))

  log_retention_days = var.log_retention_days
  tags               = local.tags
}
