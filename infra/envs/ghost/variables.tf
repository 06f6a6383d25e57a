variable "region" {
  type    = string
  default = "us-east-1"
}

variable "account_id" {
  description = "AWS account id; null: looked up with the credentials in use."
  type        = string
  default     = null
}

variable "offline_plan" {
  description = "Plan without credentials or any AWS call (account_id must be set): only for checking the plan, never for apply."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Ghost resources are named <name_prefix>-ghost-<workspace>-..."
  type        = string
  default     = "sluice"
}

variable "prod_name_prefix" {
  description = "name_prefix of the prod pipeline (envs/prod): its buckets are <prefix>-landing, ..."
  type        = string
  default     = "sluice-prod"
}

variable "prod_buckets" {
  description = "Prod bucket names by role, where they differ from <prod_name_prefix>-<role>."
  type        = map(string)
  default     = {}
}

variable "stages" {
  description = "Stages to ghost, e.g. [\"curate\"]."
  type        = set(string)
}

variable "zip_dir" {
  description = "Folder with <stage>/bootstrap.zip of the branch build; null: <repo>/target/lambda."
  type        = string
  default     = null
}

variable "architecture" {
  type    = string
  default = "x86_64"
}

variable "code_version" {
  description = "SLUICE_CODE_VERSION: the branch's commit."
  type        = string
}

variable "environment" {
  type    = map(string)
  default = {}
}

variable "stage_settings" {
  description = "Per-stage overrides (see modules/pipeline)."
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

variable "tags" {
  type    = map(string)
  default = {}
}
