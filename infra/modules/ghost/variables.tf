variable "name_prefix" {
  description = "Prefix of every ghost resource, e.g. sluice-ghost-<branch>. It is also the ghost bucket's name."
  type        = string
  validation {
    # The bucket is named after it (63 max); "-profile-oldest-message" must fit in 64.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,39}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-41 characters of a-z, 0-9 and '-', starting and ending with a letter or digit."
  }
}

variable "account_id" {
  description = "AWS account id (see modules/stage)."
  type        = string
}

variable "stages" {
  description = "Which stages get a ghost, e.g. [\"curate\"] or [\"curate\", \"profile\"]. A ghost stage reads the ghost output of the stage before it when that one is ghosted too, prod otherwise."
  type        = set(string)
  validation {
    condition     = length(var.stages) > 0 && alltrue([for s in var.stages : contains(["ingest", "curate", "profile"], s)])
    error_message = "stages must be a non-empty subset of ingest, curate, profile."
  }
}

variable "prod_buckets" {
  description = "The prod pipeline's bucket names by role (landing, validated, curated, profiles, quarantine). Ghosts read them and never write them."
  type = object({
    landing    = string
    validated  = string
    curated    = string
    profiles   = string
    quarantine = string
  })
}

variable "zip_paths" {
  description = "Deployment zip of the branch build, per ghosted stage."
  type        = map(string)
  validation {
    condition     = length(var.zip_paths) > 0
    error_message = "zip_paths needs an entry per ghosted stage."
  }
}

variable "architecture" {
  type    = string
  default = "x86_64"
}

variable "code_version" {
  description = "SLUICE_CODE_VERSION of the branch build."
  type        = string
}

variable "environment" {
  description = "Extra environment variables for every ghost stage."
  type        = map(string)
  default     = {}
}

variable "stage_settings" {
  description = "Per-stage overrides, as in modules/pipeline."
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

variable "expiration_days" {
  description = "Ghost outputs are throwaway: they expire after this many days."
  type        = number
  default     = 14
}

variable "log_retention_days" {
  type    = number
  default = 7
}

variable "lifecycle_rules" {
  description = "Manage bucket lifecycle rules (expiry, multipart clean-up); false for LocalStack (see modules/bucket)."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy delete the ghost bucket with its contents."
  type        = bool
  default     = true
}

variable "tags" {
  type    = map(string)
  default = {}
}
