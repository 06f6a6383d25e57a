variable "localstack_endpoint" {
  description = "LocalStack's gateway."
  type        = string
  default     = "http://127.0.0.1:4566"
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; null: sluice-local in the default workspace, sluice-<workspace> in another (a second deployment beside the first in one LocalStack, as make e2e's fault-proxy run uses)."
  type        = string
  default     = null
}

variable "zip_dir" {
  description = "Folder with <stage>/bootstrap.zip; null: <repo>/target/lambda (scripts/zip-host.py or cargo lambda build)."
  type        = string
  default     = null
}

variable "architecture" {
  description = "Ignored by the host-mode executor (the binary must match the host), used by Docker LocalStack."
  type        = string
  default     = "x86_64"
}

variable "code_version" {
  type    = string
  default = "local"
}

variable "environment" {
  description = "Extra SLUICE_* variables for every stage."
  type        = map(string)
  default     = {}
}

variable "stage_settings" {
  description = "Per-stage overrides (see modules/pipeline); they apply to the ghost stages too. Locally, short timeouts keep redelivery after a failure quick (visibility timeout = 6 x timeout + maximum_batching_window)."
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
  # LocalStack's SQS poller takes one batch about every second and ignores
  # maximum_concurrency, so batches of 10 keep a many-file run quick.
  default = {
    ingest  = { timeout = 20, memory_size = 512, batch_size = 10 }
    curate  = { timeout = 20, memory_size = 512, batch_size = 10 }
    profile = { timeout = 20, memory_size = 512, batch_size = 10 }
  }
}

variable "ghost_stages" {
  description = "Stages to run a ghost of beside the pipeline, e.g. [\"curate\"]."
  type        = set(string)
  default     = []
}

variable "ghost_zip_dir" {
  description = "Zips of the ghost (branch) build; null: zip_dir."
  type        = string
  default     = null
}

variable "ghost_code_version" {
  type    = string
  default = "local-ghost"
}
