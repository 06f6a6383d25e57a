# Everything the end-to-end tests need, also as one JSON: terraform output -json.

output "endpoint" {
  value = var.localstack_endpoint
}

output "region" {
  value = var.region
}

output "buckets" {
  value = module.pipeline.buckets
}

output "alert_topic_arn" {
  value = module.pipeline.alert_topic_arn
}

output "stages" {
  value = module.pipeline.stages
}

output "function_names" {
  value = module.pipeline.function_names
}

output "queue_urls" {
  value = module.pipeline.queue_urls
}

output "dlq_urls" {
  value = module.pipeline.dlq_urls
}

output "ghost" {
  description = "null unless ghost_stages is set."
  value = length(module.ghost) == 0 ? null : {
    bucket           = module.ghost[0].bucket
    output_locations = module.ghost[0].output_locations
    stages           = module.ghost[0].stages
    function_names   = module.ghost[0].function_names
    queue_urls       = module.ghost[0].queue_urls
    dlq_urls         = module.ghost[0].dlq_urls
    alert_topic_arn  = module.ghost[0].alert_topic_arn
  }
}
