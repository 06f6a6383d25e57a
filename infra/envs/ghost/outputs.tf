output "name_prefix" {
  value = local.name_prefix
}

output "bucket" {
  value = module.ghost.bucket
}

output "output_locations" {
  value = module.ghost.output_locations
}

output "stages" {
  value = module.ghost.stages
}

output "prod_buckets" {
  value = local.prod_buckets
}

output "prod_resource_arns" {
  description = "Prod resources no ghost may write (read by infra/checks/ghost_iam.py from the plan)."
  value       = local.prod_resource_arns
}
