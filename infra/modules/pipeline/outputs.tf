output "buckets" {
  description = "Bucket names by role: landing, validated, curated, profiles, quarantine."
  value       = { for role, b in module.bucket : role => b.name }
}

output "bucket_arns" {
  value = { for role, b in module.bucket : role => b.arn }
}

output "alert_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "stages" {
  description = "Per stage: function, alias, queue, DLQ, role and locations."
  value = {
    for s, m in module.stage : s => {
      function_name    = m.function_name
      function_arn     = m.function_arn
      function_version = m.function_version
      alias_arn        = m.alias_arn
      queue_url        = m.queue_url
      queue_arn        = m.queue_arn
      dlq_url          = m.dlq_url
      dlq_arn          = m.dlq_arn
      role_arn         = m.role_arn
      log_group_name   = m.log_group_name
      input            = m.input
      output           = m.output
      quarantine       = m.quarantine
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
