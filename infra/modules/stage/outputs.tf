output "function_name" {
  value = aws_lambda_function.this.function_name
}

output "function_arn" {
  value = aws_lambda_function.this.arn
}

output "function_version" {
  description = "The version this apply published."
  value       = aws_lambda_function.this.version
}

output "alias_arn" {
  description = "ARN of the `live` alias, which the queue invokes."
  value       = aws_lambda_alias.live.arn
}

output "alias_version" {
  value = aws_lambda_alias.live.function_version
}

output "queue_url" {
  value = aws_sqs_queue.this.url
}

output "queue_arn" {
  value = aws_sqs_queue.this.arn
}

output "dlq_url" {
  value = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  value = aws_sqs_queue.dlq.arn
}

output "role_arn" {
  value = aws_iam_role.this.arn
}

output "role_name" {
  value = aws_iam_role.this.name
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.this.name
}

output "rule_name" {
  value = aws_cloudwatch_event_rule.this.name
}

output "event_pattern" {
  value = local.event_pattern
}

output "input" {
  value = local.input_url
}

output "output" {
  value = local.output_url
}

output "quarantine" {
  value = local.quarantine_url
}
