data "aws_partition" "this" {}
data "aws_region" "this" {}

locals {
  partition = data.aws_partition.this.partition
  region    = data.aws_region.this.name

  queue_name = var.name
  dlq_name   = "${var.name}-dlq"
  rule_name  = var.name
  log_group  = "/aws/lambda/${var.name}"

  # Built from names rather than taken from resource attributes, so every
  # policy document below is known at plan time (infra/checks/ghost_iam.py
  # reads them from the plan) and the queue policy can be inline.
  queue_arn     = "arn:${local.partition}:sqs:${local.region}:${var.account_id}:${local.queue_name}"
  dlq_arn       = "arn:${local.partition}:sqs:${local.region}:${var.account_id}:${local.dlq_name}"
  rule_arn      = "arn:${local.partition}:events:${local.region}:${var.account_id}:rule/${local.rule_name}"
  log_group_arn = "arn:${local.partition}:logs:${local.region}:${var.account_id}:log-group:${local.log_group}"

  # The code's default quarantine is <output bucket>/_quarantine/<stage>/; it is
  # spelled out here so the IAM policy and SLUICE_QUARANTINE always agree.
  quarantine = {
    bucket = coalesce(var.quarantine_bucket, var.output_bucket)
    prefix = var.quarantine_bucket == null ? "_quarantine/${var.stage}/" : var.quarantine_prefix
  }

  # AWS's advice for an SQS event source mapping: at least six times the
  # function timeout (a throttled batch is retried before its messages
  # reappear), plus the batching window (a message waits that long in a
  # batch being gathered, invisible already).
  visibility_timeout = coalesce(var.visibility_timeout, 6 * var.timeout + var.maximum_batching_window)

  input_url      = "s3://${var.input_bucket}/${var.input_prefix}"
  output_url     = "s3://${var.output_bucket}/${var.output_prefix}"
  quarantine_url = "s3://${local.quarantine.bucket}/${local.quarantine.prefix}"

  # What the stage writes (and reads back: manifests, markers, conditional
  # writes need HeadObject on its own outputs).
  own = [
    { bucket = var.output_bucket, prefix = var.output_prefix },
    local.quarantine,
  ]
  reads = concat([{ bucket = var.input_bucket, prefix = var.input_prefix }], var.extra_reads)

  object_arn = "arn:${local.partition}:s3:::%s/%s*"
  bucket_arn = "arn:${local.partition}:s3:::%s"

  # EventBridge allows one condition per field, so prefix AND suffix become a wildcard.
  key_filter = (
    var.input_prefix != "" && var.event_suffix != "" ? [{ wildcard = "${var.input_prefix}*${var.event_suffix}" }] :
    var.input_prefix != "" ? [{ prefix = var.input_prefix }] :
    var.event_suffix != "" ? [{ suffix = var.event_suffix }] :
    null
  )
  # A stage with an upstream is also fed the upstream's commits (its
  # manifests): it acts only on committed outputs, and a commit delivers
  # every output it lists. Matchers in one array are alternatives.
  commit_filter = var.upstream == null ? [] : [{ prefix = "${var.input_prefix}_sluice/manifests/${var.upstream}/" }]
  object_filter = local.key_filter == null ? null : concat(local.key_filter, local.commit_filter)
  event_pattern = {
    source = ["aws.s3"]
    # A stage with an upstream also consumes deletions: what its upstream
    # removes (a replaced or retracted output) is retracted here too.
    "detail-type" = var.upstream == null ? ["Object Created"] : ["Object Created", "Object Deleted"]
    detail = merge(
      { bucket = { name = [var.input_bucket] } },
      local.object_filter == null ? {} : { object = { key = local.object_filter } },
    )
  }

  environment = merge(
    {
      SLUICE_MODE         = var.mode
      SLUICE_INPUT        = local.input_url
      SLUICE_OUTPUT       = local.output_url
      SLUICE_QUARANTINE   = local.quarantine_url
      SLUICE_DLQ          = aws_sqs_queue.dlq.url
      SLUICE_QUEUE        = aws_sqs_queue.this.url
      SLUICE_CODE_VERSION = var.code_version
    },
    var.alert_topic_arn == null ? {} : { SLUICE_ALERTS = var.alert_topic_arn },
    var.upstream == null ? {} : { SLUICE_UPSTREAM = var.upstream },
    var.mode == "ghost" ? { SLUICE_PROD_BUCKETS = join(",", var.prod_buckets) } : {},
    var.environment,
  )

  tags = merge(var.tags, { "sluice:stage" = var.stage, "sluice:mode" = var.mode })
}

# --- queue, DLQ and the rule that feeds them ----------------------------------------

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = var.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "this" {
  name                       = local.queue_name
  visibility_timeout_seconds = local.visibility_timeout
  message_retention_seconds  = var.message_retention_seconds
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  # Inline rather than an aws_sqs_queue_policy: one wait less on apply and destroy.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "FromItsEventBridgeRule"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = local.queue_arn
      Condition = { ArnEquals = { "aws:SourceArn" = local.rule_arn } }
    }]
  })
  tags = local.tags

  # The variables' validations say the same for a set visibility_timeout;
  # this also holds the computed default to it.
  lifecycle {
    precondition {
      condition     = local.visibility_timeout >= 6 * var.timeout + var.maximum_batching_window
      error_message = "The queue's visibility timeout (${local.visibility_timeout} s) must be at least 6 x the function timeout (${var.timeout} s) + maximum_batching_window (${var.maximum_batching_window} s)."
    }
  }
}

resource "aws_cloudwatch_event_rule" "this" {
  name          = local.rule_name
  description   = "Object Created (and Deleted, with an upstream) in s3://${var.input_bucket}/${var.input_prefix}*${var.event_suffix} -> ${var.name}"
  event_pattern = jsonencode(local.event_pattern)
  tags          = local.tags
}

resource "aws_cloudwatch_event_target" "this" {
  rule      = aws_cloudwatch_event_rule.this.name
  target_id = "queue"
  arn       = aws_sqs_queue.this.arn
}

# --- the function ------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_iam_role" "this" {
  name = var.name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "this" {
  name = "${var.name}-least-privilege"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "ReadInputs"
          Effect   = "Allow"
          Action   = ["s3:GetObject"]
          Resource = distinct([for r in local.reads : format(local.object_arn, r.bucket, r.prefix)])
        },
        {
          Sid      = "ReadBackAndWriteOwnOutputs"
          Effect   = "Allow"
          Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
          Resource = distinct([for r in local.own : format(local.object_arn, r.bucket, r.prefix)])
        },
        {
          # Without ListBucket, S3 answers 403 instead of 404 for a missing key,
          # and the stage probes missing keys all the time (manifests, markers,
          # conditional writes). The prefix is not a condition here: S3 does
          # not pass s3:prefix when it checks ListBucket for a HEAD/GET.
          Sid      = "TellMissingKeysApart"
          Effect   = "Allow"
          Action   = ["s3:ListBucket"]
          Resource = distinct([for r in concat(local.reads, local.own) : format(local.bucket_arn, r.bucket)])
        },
        {
          Sid    = "ConsumeItsQueue"
          Effect = "Allow"
          # SendMessage: a message deferred for lack of time goes back as a
          # new one (SLUICE_QUEUE), so a deferral uses up none of its receives.
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility", "sqs:SendMessage"]
          Resource = [local.queue_arn]
        },
        {
          Sid      = "DeadLetterToItsDlq"
          Effect   = "Allow"
          Action   = ["sqs:SendMessage"]
          Resource = [local.dlq_arn]
        },
        {
          Sid      = "WriteItsLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = ["${local.log_group_arn}:*"]
        },
      ],
      var.alert_topic_arn == null ? [] : [{
        Sid      = "PublishAlerts"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = [var.alert_topic_arn]
      }],
    )
  })
}

resource "aws_lambda_function" "this" {
  function_name    = var.name
  description      = "Sluice ${var.stage} (${var.mode}) ${var.code_version}"
  role             = aws_iam_role.this.arn
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  runtime          = var.runtime
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout
  publish          = true

  ephemeral_storage {
    size = var.ephemeral_storage
  }

  environment {
    variables = local.environment
  }

  # JSON: the code logs JSON lines already. Levels spelled out, as Lambda
  # reports them back (left unset, every plan would publish a new version).
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.this.name
    application_log_level = var.log_level
    system_log_level      = "INFO"
  }

  tags = local.tags

  # The role's policy must exist before the first invocation.
  depends_on = [aws_iam_role_policy.this]
}

resource "aws_lambda_alias" "live" {
  name             = "live"
  description      = "What the queue invokes; move it to roll forward or back."
  function_name    = aws_lambda_function.this.function_name
  function_version = coalesce(var.alias_version, aws_lambda_function.this.version)
}

resource "aws_lambda_event_source_mapping" "this" {
  event_source_arn                   = aws_sqs_queue.this.arn
  function_name                      = aws_lambda_alias.live.arn
  enabled                            = var.enabled
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }

  tags = local.tags
}

# --- alarms ------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  # LocalStack does not keep alarm tags, which made every plan re-tag.
  lifecycle {
    ignore_changes = [tags, tags_all]
  }

  alarm_name          = "${var.name}-dlq-depth"
  alarm_description   = "Messages in the ${var.name} DLQ: permanent failures to look at (sluice redrive)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  lifecycle {
    ignore_changes = [tags, tags_all]
  }

  alarm_name          = "${var.name}-oldest-message"
  alarm_description   = "The ${var.name} queue is falling behind: its oldest message is older than ${var.oldest_message_alarm_seconds} s."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.this.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}
