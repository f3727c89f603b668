# condvest on AWS: the fetch/status Lambda function, Batch on Fargate for consolidate, resample,
# vacuum and status --check, EventBridge Scheduler in New York time, least-privilege roles whose
# statements are docs/deploy/iam.md's (policies/*.json, checked against the page by
# tests/test_terraform.py), logs, alerts, a dashboard and Glue tables.
#
# Resource names follow docs/deploy/ (function condvest, queue condvest, condvest-<stage> job
# definitions and roles): one deployment per account and region.

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  name       = "condvest"
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  lake_uri     = var.lake_prefix == "" ? "s3://${var.lake_bucket}" : "s3://${var.lake_bucket}/${var.lake_prefix}"
  prefix_slash = var.lake_prefix == "" ? "" : "${var.lake_prefix}/"
  bucket_name  = var.create_bucket ? aws_s3_bucket.lake[0].id : var.lake_bucket

  # the metric contract (metrics.json): alarms and widgets look their names up here, so a name
  # outside the contract is an error at plan time
  metrics        = jsondecode(file("${path.module}/metrics.json"))
  stage_metrics  = local.metrics.stage.metrics
  status_metrics = merge(local.metrics.status.metrics, local.metrics.status_per_interval.metrics, local.metrics.status_per_stage.metrics)
  status_stage   = local.metrics.status.stage
  # name -> name: indexing it with a name outside the contract fails the plan
  metric_name    = { for name, unit in merge(local.stage_metrics, local.status_metrics) : name => name }
  lake_dimension = coalesce(var.metrics_lake_dimension, local.lake_uri)

  alert_topic_arn = var.alert_topic_arn != null ? var.alert_topic_arn : aws_sns_topic.alerts[0].arn

  # "HH:MM" -> EventBridge Scheduler cron (minutes hours day-of-month month day-of-week year)
  weekday_cron = { for stage, at in var.schedule_times : stage => format(
    "cron(%d %d ? * %s *)",
    tonumber(split(":", at)[1]),
    tonumber(split(":", at)[0]),
    stage == "vacuum" ? var.vacuum_day : "MON-FRI",
  ) }

  common_tags = merge({ Application = "condvest" }, var.tags)
}
