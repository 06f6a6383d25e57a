output "bucket" {
  description = "The ghost bucket: everything the ghosts write is in it."
  value       = module.bucket.name
}

output "output_locations" {
  description = "Per ghosted stage, where its output is (compare with the prod stage's output)."
  value       = { for s in var.stages : s => "s3://${module.bucket.name}/${local.output_prefix[s]}" }
}

output "alert_topic_arn" {
  value = try(aws_sns_topic.alerts[0].arn, null)
}

output "stages" {
  value = {
    for s, m in module.stage : s => {
      function_name = m.function_name
      alias_arn     = m.alias_arn
      queue_url     = m.queue_url
      queue_arn     = m.queue_arn
      dlq_url       = m.dlq_url
      dlq_arn       = m.dlq_arn
      role_arn      = m.role_arn
      role_name     = m.role_name
      input         = m.input
      output        = m.output
      quarantine    = m.quarantine
    }
  }
}

output "function_names" {
  value = { for s, m in module.stage : s => m.function_name }
}

output "queue_urls" {
  value = { for s, m in module.stage : s => m.queue_url }
}

output "dlq_urls" {
  value = { for s, m in module.stage : s => m.dlq_url }
}
