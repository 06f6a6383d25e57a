output "buckets" {
  value = module.pipeline.buckets
}

output "alert_topic_arn" {
  value = module.pipeline.alert_topic_arn
}

output "stages" {
  value = module.pipeline.stages
}
