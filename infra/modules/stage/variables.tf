# One pipeline stage: a Lambda function behind its own SQS queue (with a DLQ),
# fed by an EventBridge rule on "Object Created" events of its input bucket.

variable "name" {
  description = "Name of the function; also the base name of its queue, DLQ, role, rule, log group and alarms."
  type        = string
  validation {
    # 64 is Lambda's limit; "-dlq-depth" etc. are appended for other resources.
    condition     = can(regex("^[a-zA-Z0-9-]{1,54}$", var.name))
    error_message = "name must be 1-54 characters of letters, digits and '-'."
  }
}

variable "stage" {
  description = "Which stage this is: ingest, curate or profile (tags and descriptions only; the binary knows its stage)."
  type        = string
  validation {
    condition     = contains(["ingest", "curate", "profile"], var.stage)
    error_message = "stage must be ingest, curate or profile."
  }
}

variable "account_id" {
  description = "AWS account id. ARNs in the IAM and queue policies are built from names, so that every policy is known at plan time (the ghost IAM check reads them from the plan)."
  type        = string
}

# --- code ------------------------------------------------------------------------

variable "zip_path" {
  description = "Path to the prebuilt deployment zip holding the `bootstrap` executable."
  type        = string
}

variable "architecture" {
  description = "x86_64 or arm64; must match how the zip was built."
  type        = string
  nullable    = false
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "runtime" {
  description = "Lambda runtime."
  type        = string
  nullable    = false
  default     = "provided.al2023"
}

variable "memory_size" {
  description = "Memory in MB (1769 MB is one full vCPU)."
  type        = number
  nullable    = false
  default     = 1769
}

variable "timeout" {
  description = "Function timeout in seconds."
  type        = number
  nullable    = false
  default     = 300
  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be 1-900 seconds."
  }
}

variable "ephemeral_storage" {
  description = "/tmp size in MB (spooled inputs)."
  type        = number
  nullable    = false
  default     = 2048
}

variable "alias_version" {
  description = "Pin the `live` alias (what the queue invokes) to this published version, for blue/green or rollback. null: the latest published version."
  type        = string
  default     = null
}

variable "code_version" {
  description = "SLUICE_CODE_VERSION, stamped on every output (e.g. the git commit)."
  type        = string
}

# --- what it reads and writes ------------------------------------------------

variable "input_bucket" {
  description = "Bucket the stage reads and whose Object Created events trigger it."
  type        = string
}

variable "input_prefix" {
  description = "Key prefix of the input (\"\" for the whole bucket; otherwise ending in /). Also the event rule's prefix filter."
  type        = string
  nullable    = false
  default     = ""
}

variable "event_suffix" {
  description = "Only keys ending in this trigger the stage (\"\" for any), e.g. .parquet."
  type        = string
  nullable    = false
  default     = ""
}

variable "output_bucket" {
  description = "Bucket the stage writes."
  type        = string
}

variable "output_prefix" {
  description = "Key prefix of the output (\"\" or ending in /). The stage also keeps its bookkeeping under <prefix>_sluice/."
  type        = string
  nullable    = false
  default     = ""
}

variable "quarantine_bucket" {
  description = "Bucket for rejected rows; null: the code's default, <output>/_quarantine/<stage>/."
  type        = string
  default     = null
}

variable "quarantine_prefix" {
  description = "Key prefix for rejected rows in quarantine_bucket (ending in /)."
  type        = string
  nullable    = false
  default     = ""
}

variable "extra_reads" {
  description = "Other locations the stage reads (profile reads the validated object and its ingest manifest)."
  type = list(object({
    bucket = string
    prefix = string
  }))
  nullable = false
  default  = []
}

variable "upstream" {
  description = "The stage whose committed outputs this stage consumes (SLUICE_UPSTREAM); null for a stage fed by producers. A stage with an upstream is also fed its input bucket's Object Deleted events, and retracts what it derived from a removed input."
  type        = string
  default     = null
}

variable "alert_topic_arn" {
  description = "SNS topic for alerts (SLUICE_ALERTS, profile); null for none."
  type        = string
  default     = null
}

variable "mode" {
  description = "SLUICE_MODE: prod or ghost."
  type        = string
  nullable    = false
  default     = "prod"
  validation {
    condition     = contains(["prod", "ghost"], var.mode)
    error_message = "mode must be prod or ghost."
  }
}

variable "prod_buckets" {
  description = "SLUICE_PROD_BUCKETS (every prod bucket); required in ghost mode, where the code refuses to write any of them."
  type        = list(string)
  nullable    = false
  default     = []
}

variable "environment" {
  description = "More environment variables (e.g. SLUICE_METRICS, SLUICE_RETRY_*); these win over the computed ones."
  type        = map(string)
  nullable    = false
  default     = {}
}

# --- queue and trigger -----------------------------------------------------------

variable "batch_size" {
  description = "Messages per invocation (1-10; up to 10000 with a maximum_batching_window of 1 s or more). The code stops starting objects when the function's deadline is too close and gives the rest back, so a large batch is safe, but what it defers waits out the visibility timeout."
  type        = number
  nullable    = false
  default     = 1
  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000 && floor(var.batch_size) == var.batch_size
    error_message = "batch_size must be a whole number of messages, 1-10000."
  }
  validation {
    condition     = var.batch_size <= 10 || var.maximum_batching_window >= 1
    error_message = "batch_size above 10 needs a maximum_batching_window of at least 1 second (AWS rejects the event source mapping otherwise)."
  }
}

variable "maximum_batching_window" {
  description = "Seconds to gather a batch, 0-300 (required by AWS when batch_size > 10). It adds to the default visibility timeout."
  type        = number
  nullable    = false
  default     = 0
  validation {
    condition     = var.maximum_batching_window >= 0 && var.maximum_batching_window <= 300
    error_message = "maximum_batching_window must be 0-300 seconds."
  }
}

variable "maximum_concurrency" {
  description = "Most concurrent invocations the queue drives (2-1000): back-pressure on downstream systems."
  type        = number
  nullable    = false
  default     = 10
  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "maximum_concurrency must be 2-1000."
  }
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the DLQ (a batch item the code deferred for lack of time counts as one too)."
  type        = number
  nullable    = false
  default     = 5
  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be 1-1000."
  }
}

variable "visibility_timeout" {
  description = "Queue visibility timeout in seconds; null: 6 x the function timeout + maximum_batching_window (AWS's advice for event source mappings, so a throttled or retried batch is not delivered twice at once)."
  type        = number
  default     = null
  validation {
    condition     = var.visibility_timeout == null || try(var.visibility_timeout <= 43200, false)
    error_message = "visibility_timeout must be at most 43200 seconds."
  }
  validation {
    condition     = var.visibility_timeout == null || try(var.visibility_timeout >= 6 * var.timeout + var.maximum_batching_window, false)
    error_message = "visibility_timeout must be at least 6 x the function timeout + maximum_batching_window (AWS's advice for SQS event source mappings); leave it null for exactly that."
  }
}

variable "message_retention_seconds" {
  description = "How long the main queue keeps messages."
  type        = number
  nullable    = false
  default     = 345600 # 4 days
}

variable "dlq_retention_seconds" {
  description = "How long the DLQ keeps messages."
  type        = number
  nullable    = false
  default     = 1209600 # 14 days, the most SQS allows
}

variable "enabled" {
  description = "Whether the event source mapping runs (false pauses the stage; messages wait in the queue)."
  type        = bool
  nullable    = false
  default     = true
}

# --- logs and alarms ---------------------------------------------------------------

variable "log_level" {
  description = "Lambda's application log level filter (JSON log format): TRACE, DEBUG, INFO, WARN, ERROR or FATAL. Lines below it are dropped by Lambda."
  type        = string
  nullable    = false
  default     = "INFO"
}

variable "log_retention_days" {
  description = "Retention of the function's log group."
  type        = number
  nullable    = false
  default     = 30
}

variable "oldest_message_alarm_seconds" {
  description = "Alarm when the oldest message in the queue is older than this."
  type        = number
  nullable    = false
  default     = 900
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires (e.g. an SNS topic)."
  type        = list(string)
  nullable    = false
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  nullable    = false
  default     = {}
}
