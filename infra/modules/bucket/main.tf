# A private bucket as every Sluice bucket is: versioned, encrypted (SSE-S3),
# no public access, every event sent to EventBridge (each consumer has its own
# rule there; S3's own notifications cannot overlap on one prefix), unfinished
# multipart uploads cleaned up and, optionally, objects expired.

variable "name" {
  type = string
}

variable "expiration_days" {
  description = "Expire objects (and noncurrent versions) after this many days; null keeps them."
  type        = number
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Expire noncurrent versions (overwritten inputs, replaced outputs) after this many days; null keeps them."
  type        = number
  default     = null
}

variable "lifecycle_rules" {
  description = "Manage lifecycle rules. LocalStack (4.9) answers GetBucketLifecycleConfiguration in a way the AWS provider keeps polling for about a minute per bucket (localstack/localstack#13214), and never expires anything anyway: envs/local turns this off."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (local and ghost environments)."
  type        = bool
  default     = false
}

variable "tags" {
  type    = map(string)
  default = {}
}

resource "aws_s3_bucket" "this" {
  bucket        = var.name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_notification" "this" {
  bucket      = aws_s3_bucket.this.id
  eventbridge = true
}

locals {
  # An expiring bucket expires old versions no later than current ones.
  noncurrent_days = try(coalesce(var.noncurrent_version_expiration_days, var.expiration_days), null)
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  count  = var.lifecycle_rules ? 1 : 0
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    dynamic "noncurrent_version_expiration" {
      for_each = local.noncurrent_days == null ? [] : [local.noncurrent_days]
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
    dynamic "expiration" {
      for_each = var.expiration_days == null ? [] : [var.expiration_days]
      content {
        days = expiration.value
      }
    }
  }

  # Lifecycle rules apply to versions created after versioning is on.
  depends_on = [aws_s3_bucket_versioning.this]
}

output "name" {
  # Known at plan time (policies are built from it), yet whoever uses it waits
  # for the bucket to be ready to feed EventBridge.
  value      = var.name
  depends_on = [aws_s3_bucket_notification.this, aws_s3_bucket_public_access_block.this]
}

output "arn" {
  value = aws_s3_bucket.this.arn
}
