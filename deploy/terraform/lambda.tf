# The function runs one condvest command per invocation (docs/deploy/lambda.md): fetch on its
# schedule, or any command from a direct event such as {"command": "status", "args": {"check": true}}.

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${local.name}"
  retention_in_days = var.log_retention_days
  tags              = local.common_tags
}

resource "aws_lambda_function" "condvest" {
  function_name = local.name
  description   = "condvest: one command per invocation (default fetch)"
  package_type  = "Image"
  image_uri     = var.image_uri
  role          = aws_iam_role.stage["fetch"].arn
  architectures = ["x86_64"]
  timeout       = 900
  memory_size   = var.lambda_memory

  ephemeral_storage {
    size = 1024
  }

  environment {
    variables = merge(
      {
        CONDVEST_LAKE__URI                   = local.lake_uri
        CONDVEST_LAMBDA_COMMAND              = "fetch"
        CONDVEST_LAMBDA_MARGIN_S             = "30"
        CONDVEST_POLYGON__API_KEY_SECRET_ARN = var.polygon_secret_arn
        CONDVEST_METRICS__NAMESPACE          = var.metrics_namespace
      },
      var.database_secret_arn == null ? {} : { CONDVEST_POSTGRES__SECRET_ARN = var.database_secret_arn },
      var.polygon_requests_per_minute == null ? {} : { CONDVEST_POLYGON__REQUESTS_PER_MINUTE = tostring(var.polygon_requests_per_minute) },
    )
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  tags       = local.common_tags
  depends_on = [aws_iam_role_policy.stage]
}
