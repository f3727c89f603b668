# Alerts: the condvest-alerts topic (or alert_topic_arn), the function's Errors, a Batch job
# FAILED (an EventBridge rule on "Batch Job State Change"), and freshness: SessionsBehind > 0,
# where no data (status did not run or did not emit) is breaching.

resource "aws_sns_topic" "alerts" {
  count = var.alert_topic_arn == null ? 1 : 0

  name = "${local.name}-alerts"
  tags = local.common_tags
}

resource "aws_sns_topic_policy" "alerts" {
  count = var.alert_topic_arn == null ? 1 : 0

  arn = aws_sns_topic.alerts[0].arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountOwner"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:SetTopicAttributes"]
        Resource  = aws_sns_topic.alerts[0].arn
      },
      {
        Sid       = "EventsAndAlarms"
        Effect    = "Allow"
        Principal = { Service = ["events.amazonaws.com", "cloudwatch.amazonaws.com"] }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts[0].arn
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alert_email == null ? 0 : 1

  topic_arn = local.alert_topic_arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${local.name}-lambda-errors"
  alarm_description   = "The condvest function failed (a command exited non-zero, or the event was refused)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.condvest.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alert_topic_arn]
  tags                = local.common_tags
}

resource "aws_cloudwatch_metric_alarm" "sessions_behind" {
  alarm_name          = "${local.name}-sessions-behind"
  alarm_description   = "The lake is behind the trading calendar, or status --check has not reported within the period (missing data is breaching)."
  namespace           = var.metrics_namespace
  metric_name         = local.metric_name["SessionsBehind"]
  dimensions          = { Stage = local.status_stage, Lake = local.lake_dimension }
  statistic           = "Maximum"
  period              = var.freshness_period_seconds
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alert_topic_arn]
  ok_actions          = [local.alert_topic_arn]
  tags                = local.common_tags
}

resource "aws_cloudwatch_event_rule" "batch_failed" {
  name        = "${local.name}-batch-job-failed"
  description = "A condvest Batch job (or an array job: FAILED when any child is) failed."
  event_pattern = jsonencode({
    source        = ["aws.batch"]
    "detail-type" = ["Batch Job State Change"]
    detail = {
      status   = ["FAILED"]
      jobQueue = [aws_batch_job_queue.condvest.arn]
    }
  })
  tags = local.common_tags
}

resource "aws_cloudwatch_event_target" "batch_failed" {
  rule      = aws_cloudwatch_event_rule.batch_failed.name
  target_id = "${local.name}-alerts"
  arn       = local.alert_topic_arn

  input_transformer {
    input_paths = {
      job    = "$.detail.jobName"
      id     = "$.detail.jobId"
      reason = "$.detail.statusReason"
    }
    input_template = "\"condvest Batch job <job> (<id>) FAILED: <reason>\""
  }
}
