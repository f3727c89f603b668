output "lake_uri" {
  description = "The lake (CONDVEST_LAKE__URI of every stage)."
  value       = local.lake_uri
}

output "function_name" {
  description = "The fetch/status Lambda function."
  value       = aws_lambda_function.condvest.function_name
}

output "function_arn" {
  value = aws_lambda_function.condvest.arn
}

output "job_queue_arn" {
  description = "The Batch job queue (Fargate)."
  value       = aws_batch_job_queue.condvest.arn
}

output "job_definitions" {
  description = "Job definition ARNs (with revision) by stage."
  value       = { for stage, jd in aws_batch_job_definition.stage : stage => jd.arn }
}

output "role_arns" {
  description = "IAM role ARNs by role (fetch, consolidate, resample, vacuum, status, scheduler, batch-execution)."
  value       = merge({ for name, role in aws_iam_role.stage : name => role.arn }, { "batch-execution" = aws_iam_role.batch_execution.arn })
}

output "alert_topic_arn" {
  description = "Where the alarms and the Batch FAILED rule publish."
  value       = local.alert_topic_arn
}

output "schedules" {
  description = "Schedule expressions by stage (time zone America/New_York)."
  value       = var.enable_schedules ? local.weekday_cron : {}
}

output "dashboard_name" {
  value = var.enable_dashboard ? aws_cloudwatch_dashboard.condvest[0].dashboard_name : null
}

output "glue_database" {
  value = var.enable_glue ? aws_glue_catalog_database.lake[0].name : null
}
