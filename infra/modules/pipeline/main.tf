# The prod pipeline: five buckets, the alert topic, and the three stages
#
#   <p>-landing   raw/<dataset>/...  --ingest-->  <p>-validated  --curate-->  <p>-curated  --profile-->  <p>-profiles
#                                        \--> <p>-quarantine/ingest/     (curate/, profile/ likewise)
#
# Each stage is triggered by an EventBridge rule on its input bucket. Stages
# keep bookkeeping under _sluice/ in their output bucket; those keys never
# trigger the next stage (curate and profile only take *.parquet, and the code
# skips any key with a segment starting with "_").

data "aws_partition" "this" {}
data "aws_region" "this" {}

locals {
  bucket_roles = ["landing", "validated", "curated", "profiles", "quarantine"]
  buckets      = { for b in local.bucket_roles : b => "${var.name_prefix}-${b}" }

  # Buckets by role; the stages below name them by role too.
  stages = {
    ingest = { upstream = null, input = "landing", input_prefix = "raw/", event_suffix = "", output = "validated", extra_reads = [], alerts = false }
    curate = { upstream = "ingest", input = "validated", input_prefix = "", event_suffix = ".parquet", output = "curated", extra_reads = [], alerts = false }
    # The quarantine-ratio check reads the validated object a curated file came
    # from, and ingest's manifest beside it.
    profile = { upstream = "curate", input = "curated", input_prefix = "", event_suffix = ".parquet", output = "profiles", extra_reads = ["validated"], alerts = true }
  }

  alert_topic_arn = "arn:${data.aws_partition.this.partition}:sns:${data.aws_region.this.name}:${var.account_id}:${var.name_prefix}-alerts"

  tags = merge(var.tags, { "sluice:pipeline" = var.name_prefix })
}

module "bucket" {
  source   = "../bucket"
  for_each = local.buckets

  name                               = each.value
  expiration_days                    = each.key == "quarantine" ? var.quarantine_expiration_days : null
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  lifecycle_rules                    = var.lifecycle_rules
  force_destroy                      = var.force_destroy
  tags                               = local.tags
}

resource "aws_sns_topic" "alerts" {
  name = "${var.name_prefix}-alerts"
  tags = local.tags
}

module "stage" {
  source   = "../stage"
  for_each = local.stages

  name         = "${var.name_prefix}-${each.key}"
  stage        = each.key
  account_id   = var.account_id
  zip_path     = var.zip_paths[each.key]
  architecture = var.architecture
  code_version = var.code_version

  # Names come from the bucket module's outputs so that the buckets (with
  # EventBridge notifications on) exist before a stage is wired to them.
  input_bucket      = module.bucket[each.value.input].name
  input_prefix      = each.value.input_prefix
  event_suffix      = each.value.event_suffix
  upstream          = each.value.upstream
  output_bucket     = module.bucket[each.value.output].name
  output_prefix     = ""
  quarantine_bucket = module.bucket["quarantine"].name
  quarantine_prefix = "${each.key}/"
  extra_reads       = [for r in each.value.extra_reads : { bucket = module.bucket[r].name, prefix = "" }]
  # Built from the name (known at plan time, like every ARN in the policies).
  alert_topic_arn = each.value.alerts ? local.alert_topic_arn : null
  mode            = "prod"

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
  alarm_actions      = var.alarm_actions != null ? var.alarm_actions : [aws_sns_topic.alerts.arn]
  tags               = local.tags
}
