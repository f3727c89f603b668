# EventBridge Scheduler, in New York time (schedule_expression_timezone): 16:30 is 16:30 all
# year, EST or EDT, unlike a UTC cron. The stages are started directly at fixed times; each
# takes a lock and processes what the previous stage has finished, so a late stage only delays
# freshness to the next run (docs/deploy/eventbridge.md).

locals {
  # Batch SubmitJob through Scheduler's universal target; consolidate is an array job of
  # consolidate_shards children (Batch's smallest array is 2: one shard is a plain job)
  batch_submits = {
    consolidate = merge(
      { JobName = "${local.name}-consolidate", JobQueue = aws_batch_job_queue.condvest.arn, JobDefinition = aws_batch_job_definition.stage["consolidate"].arn_prefix },
      var.consolidate_shards > 1 ? { ArrayProperties = { Size = var.consolidate_shards } } : {},
    )
    resample = { JobName = "${local.name}-resample", JobQueue = aws_batch_job_queue.condvest.arn, JobDefinition = aws_batch_job_definition.stage["resample"].arn_prefix }
    vacuum   = { JobName = "${local.name}-vacuum", JobQueue = aws_batch_job_queue.condvest.arn, JobDefinition = aws_batch_job_definition.stage["vacuum"].arn_prefix }
    status   = { JobName = "${local.name}-status", JobQueue = aws_batch_job_queue.condvest.arn, JobDefinition = aws_batch_job_definition.stage["status"].arn_prefix }
  }
}

resource "aws_scheduler_schedule" "fetch" {
  count = var.enable_schedules ? 1 : 0

  name                         = "${local.name}-fetch-daily"
  description                  = "condvest fetch (Lambda), trading weekdays, New York time"
  schedule_expression          = local.weekday_cron.fetch
  schedule_expression_timezone = "America/New_York"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.condvest.arn
    role_arn = aws_iam_role.stage["scheduler"].arn
    input    = jsonencode({ command = "fetch", args = {} })

    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 3600
    }
  }
}

resource "aws_scheduler_schedule" "batch" {
  for_each = { for stage, submit in local.batch_submits : stage => jsonencode(submit) if var.enable_schedules }

  name                         = "${local.name}-${each.key}-${each.key == "vacuum" ? "weekly" : "daily"}"
  description                  = "condvest ${each.key} (Batch), New York time"
  schedule_expression          = local.weekday_cron[each.key]
  schedule_expression_timezone = "America/New_York"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.stage["scheduler"].arn
    input    = each.value

    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 3600
    }
  }
}
