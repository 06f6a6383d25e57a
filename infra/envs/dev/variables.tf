variable "region" {
  type    = string
  default = "us-east-1"
}

variable "name_prefix" {
  description = "Buckets are <name_prefix>-landing, ...: bucket names are global, so make it unique to your organisation."
  type        = string
  default     = "sluice-dev"
}

variable "zip_dir" {
  description = "Folder with <stage>/bootstrap.zip; null: <repo>/target/lambda."
  type        = string
  default     = null
}

variable "architecture" {
  description = "As the zips were built (cargo lambda build defaults to x86_64; --arm64 for Graviton)."
  type        = string
  default     = "x86_64"
}

variable "code_version" {
  description = "SLUICE_CODE_VERSION: the commit being deployed."
  type        = string
}

variable "environment" {
  description = "Extra SLUICE_* variables for every stage."
  type        = map(string)
  default     = {}
}

variable "stage_settings" {
  description = "Per-stage overrides (see modules/pipeline), e.g. { curate = { memory_size = 3008, alias_version = \"7\" } } to pin (roll back) curate's live alias."
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
}

variable "quarantine_expiration_days" {
  type    = number
  default = 14
}

variable "noncurrent_version_expiration_days" {
  type    = number
  default = 7
}

variable "log_retention_days" {
  type    = number
  default = 14
}

variable "alarm_actions" {
  description = "Alarm targets; null: the pipeline's alert topic."
  type        = list(string)
  default     = null
}

variable "tags" {
  type    = map(string)
  default = {}
}
