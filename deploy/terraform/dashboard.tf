# One page: stage durations, rows landed and quarantined, sessions behind, silver lag per
# interval, seconds since each stage's last success. Every metric name comes from metrics.json.

locals {
  dashboard_stages = ["fetch", "consolidate", "resample", "vacuum"]
  ns               = var.metrics_namespace

  stage_series = { for metric in ["StageDuration", "RowsLanded", "RowsQuarantined", "StageFailed"] : metric => [
    for stage in local.dashboard_stages : [local.ns, local.metric_name[metric], "Stage", stage, "Lake", local.lake_dimension]
  ] }

  widgets = [
    { title = "Stage duration (s)", stat = "Maximum", metrics = local.stage_series.StageDuration },
    { title = "Rows landed", stat = "Sum", metrics = local.stage_series.RowsLanded },
    { title = "Rows quarantined", stat = "Sum", metrics = local.stage_series.RowsQuarantined },
    { title = "Stage failures", stat = "Sum", metrics = local.stage_series.StageFailed },
    {
      title = "Sessions behind, missing sessions, pending date files, quarantined rows"
      stat  = "Maximum"
      metrics = [for metric in ["SessionsBehind", "MissingSessions", "PendingDateFiles", "QuarantinedRows"] :
      [local.ns, local.metric_name[metric], "Stage", local.status_stage, "Lake", local.lake_dimension]]
    },
    {
      title = "Silver lag (sessions) per interval"
      stat  = "Maximum"
      metrics = [for interval in var.silver_intervals :
      [local.ns, local.metric_name["SilverLagSessions"], "Stage", local.status_stage, "Lake", local.lake_dimension, "Interval", tostring(interval)]]
    },
    {
      title = "Seconds since the last success"
      stat  = "Maximum"
      metrics = [for stage in local.dashboard_stages :
      [local.ns, local.metric_name["SecondsSinceLastSuccess"], "Stage", local.status_stage, "Lake", local.lake_dimension, "ForStage", stage]]
    },
    {
      title   = "Lambda errors"
      stat    = "Sum"
      metrics = [["AWS/Lambda", "Errors", "FunctionName", local.name]]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "condvest" {
  count = var.enable_dashboard ? 1 : 0

  dashboard_name = local.name
  dashboard_body = jsonencode({
    widgets = [for i, w in local.widgets : {
      type   = "metric"
      x      = (i % 2) * 12
      y      = floor(i / 2) * 6
      width  = 12
      height = 6
      properties = {
        title   = w.title
        region  = local.region
        stat    = w.stat
        period  = 86400
        view    = "timeSeries"
        metrics = w.metrics
      }
    }]
  })
}
