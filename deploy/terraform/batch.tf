# Batch on Fargate (docs/deploy/batch.md): the container command is the condvest subcommand and
# its flags. Consolidate's definition carries --shards N and is submitted as an array job of
# size N: each child takes the shard AWS_BATCH_JOB_ARRAY_INDEX, which Batch sets (AWS_BATCH_*
# names are Batch's own: a job definition may not set them).

resource "aws_cloudwatch_log_group" "batch" {
  name              = "/aws/batch/${local.name}"
  retention_in_days = var.log_retention_days
  tags              = local.common_tags
}

resource "aws_batch_compute_environment" "fargate" {
  compute_environment_name = "${local.name}-fargate"
  type                     = "MANAGED"
  state                    = "ENABLED"
  service_role             = var.batch_service_role_arn

  compute_resources {
    type               = "FARGATE"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  tags = local.common_tags
}

resource "aws_batch_job_queue" "condvest" {
  name     = local.name
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate.arn
  }

  tags = local.common_tags
}

locals {
  # the namespace the alarms and the dashboard read is the one every stage emits to
  lake_env = [
    { name = "CONDVEST_LAKE__URI", value = local.lake_uri },
    { name = "CONDVEST_METRICS__NAMESPACE", value = var.metrics_namespace },
  ]

  jobs = {
    consolidate = {
      command = ["--output", "json", "consolidate", "--shards", tostring(var.consolidate_shards)]
      environment = [
        { name = "CONDVEST_CONSOLIDATE__MODE", value = "incremental" },
        { name = "CONDVEST_CONSOLIDATE__WORKERS", value = "10" },
        { name = "CONDVEST_CONSOLIDATE__RETENTION_DAYS", value = "30" },
      ]
      timeout  = 7200
      attempts = 3
    }
    resample = {
      command = ["--output", "json", "resample"]
      environment = [
        { name = "CONDVEST_RESAMPLE__INTERVALS", value = join(",", var.silver_intervals) },
        # DuckDB spills beyond it: three quarters of the task's memory (3GB of 4 GB)
        { name = "CONDVEST_RESAMPLE__MEMORY_LIMIT", value = "${max(1, floor(var.batch_resources.resample.memory * 3 / 4 / 1024))}GB" },
      ]
      timeout  = 7200
      attempts = 3
    }
    vacuum = {
      command     = ["--output", "json", "vacuum"]
      environment = var.database_secret_arn == null ? [] : [{ name = "CONDVEST_POSTGRES__SECRET_ARN", value = var.database_secret_arn }]
      timeout     = 7200
      attempts    = 3
    }
    status = {
      command     = ["--output", "json", "status", "--check"]
      environment = []
      timeout     = 1800
      # exit 1 is the finding (stale, or a last run failed): one attempt, FAILED, the alert
      attempts = 1
    }
  }
}

resource "aws_batch_job_definition" "stage" {
  for_each = local.jobs

  name                  = "${local.name}-${each.key}"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  container_properties = jsonencode({
    image            = var.image_uri
    command          = each.value.command
    jobRoleArn       = aws_iam_role.stage[each.key].arn
    executionRoleArn = aws_iam_role.batch_execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.batch_resources[each.key].vcpu) },
      { type = "MEMORY", value = tostring(var.batch_resources[each.key].memory) },
    ]
    environment                  = concat(local.lake_env, each.value.environment)
    networkConfiguration         = { assignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED" }
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.batch.name
        "awslogs-stream-prefix" = each.key
      }
    }
  })

  # exit 2 is a usage or configuration error: retrying cannot help (docs/deploy/batch.md)
  retry_strategy {
    attempts = each.value.attempts
    evaluate_on_exit {
      on_exit_code = "2"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "CannotPullContainerError*"
      action    = "RETRY"
    }
    evaluate_on_exit {
      on_exit_code = "1"
      action       = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = each.value.timeout
  }

  tags = local.common_tags
}
