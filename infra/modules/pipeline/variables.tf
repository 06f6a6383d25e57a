variable "name_prefix" {
  description = "Prefix of every name: buckets are <prefix>-landing, <prefix>-validated, ...; functions <prefix>-ingest, ..."
  type        = string
  validation {
    # Bucket names: lower case; the longest suffix is "-quarantine" (11), the
    # longest function-derived name "-profile-oldest-message" stays under 64.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix must be 2-31 characters of a-z, 0-9 and '-'."
  }
}

variable "account_id" {
  description = "AWS account id (see modules/stage)."
  type        = string
}

variable "zip_paths" {
  description = "Deployment zip per stage: { ingest = \".../bootstrap.zip\", curate = ..., profile = ... }."
  type        = map(string)
  validation {
    condition     = alltrue([for s in ["ingest", "curate", "profile"] : contains(keys(var.zip_paths), s)])
    error_message = "zip_paths needs ingest, curate and profile."
  }
}

variable "architecture" {
  description = "x86_64 or arm64, as the zips were built."
  type        = string
  default     = "x86_64"
}

variable "code_version" {
  description = "SLUICE_CODE_VERSION for every stage (e.g. the git commit)."
  type        = string
}

variable "environment" {
  description = "Extra environment variables for every stage (e.g. SLUICE_METRICS = \"emf\")."
  type        = map(string)
  default     = {}
}

variable "stage_settings" {
  description = "Per-stage overrides: { curate = { memory_size = 3008, timeout = 600, ... } }. Unset fields take the defaults of modules/stage."
  type = map(object({
    memory_size             = optional(number)
    timeout                 = optional(number)
    ephemeral_storage       = optional(number)
    batch_size              = optional(number)
    maximum_batching_window = optional(number)
    maximum_concurrency     = optional(number)
    max_receive_count       = optional(number)
    alias_version           = optional(string)
    enabled                 = optional(bool)
    environment             = optional(map(string), {})
  }))
  default = {}
  validation {
    condition     = alltrue([for s in keys(var.stage_settings) : contains(["ingest", "curate", "profile"], s)])
    error_message = "stage_settings keys must be ingest, curate or profile."
  }
}

variable "quarantine_expiration_days" {
  description = "Rejected rows are kept this long."
  type        = number
  default     = 90
}

variable "noncurrent_version_expiration_days" {
  description = "Overwritten and replaced object versions are kept this long (null: forever)."
  type        = number
  default     = null
}

variable "log_retention_days" {
  type    = number
  default = 30
}

variable "alarm_actions" {
  description = "Where the DLQ-depth and queue-age alarms go; null: the alert topic."
  type        = list(string)
  default     = null
}

variable "lifecycle_rules" {
  description = "Manage bucket lifecycle rules (expiry, multipart clean-up); false for LocalStack (see modules/bucket)."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets (true only for throwaway environments)."
  type        = bool
  default     = false
}

variable "tags" {
  type    = map(string)
  default = {}
}
