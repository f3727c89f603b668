# The policies are docs/deploy/iam.md's, verbatim in policies/*.json (tests/test_terraform.py
# fails when a file and the page differ); only the page's placeholders are filled here:
# <PREFIX>/ (dropped for a lake at the bucket root, as the page says), <BUCKET>, <REGION>,
# <ACCOUNT_ID> and the example secret ARNs. A secret that is not configured is dropped from its
# statement, and a statement left without a resource is dropped ("Drop the rds secret when
# PostgreSQL is off").

locals {
  doc_polygon_secret = "arn:aws:secretsmanager:<REGION>:<ACCOUNT_ID>:secret:condvest/polygon-AbCdEf"
  doc_rds_secret     = "arn:aws:secretsmanager:<REGION>:<ACCOUNT_ID>:secret:condvest/rds-AbCdEf"

  policy_files = ["fetch", "consolidate", "resample", "vacuum", "status", "scheduler"]

  policy_text = { for name in local.policy_files : name => replace(replace(replace(replace(replace(replace(
    file("${path.module}/policies/${name}.json"),
    local.doc_polygon_secret, var.polygon_secret_arn),
    local.doc_rds_secret, coalesce(var.database_secret_arn, "-")),
    "<PREFIX>/", local.prefix_slash),
    "<BUCKET>", var.lake_bucket),
    "<REGION>", local.region),
    "<ACCOUNT_ID>", local.account_id)
  }

  policy_documents = { for name, text in local.policy_text : name => {
    Version = jsondecode(text).Version
    Statement = [
      for s in jsondecode(text).Statement : merge(s, { Resource = [for r in flatten([s.Resource]) : r if r != "-"] })
      if length([for r in flatten([s.Resource]) : r if r != "-"]) > 0
    ]
  } }

  trust = { for service in ["lambda", "ecs-tasks", "scheduler"] : service => jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "${service}.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  }) }

  # role -> (trust, policy file)
  roles = {
    fetch       = { trust = "lambda", policy = "fetch" }
    consolidate = { trust = "ecs-tasks", policy = "consolidate" }
    resample    = { trust = "ecs-tasks", policy = "resample" }
    vacuum      = { trust = "ecs-tasks", policy = "vacuum" }
    status      = { trust = "ecs-tasks", policy = "status" }
    scheduler   = { trust = "scheduler", policy = "scheduler" }
  }
}

resource "aws_iam_role" "stage" {
  for_each = local.roles

  name               = "${local.name}-${each.key}"
  assume_role_policy = local.trust[each.value.trust]
  tags               = local.common_tags
}

resource "aws_iam_role_policy" "stage" {
  for_each = local.roles

  name   = "${local.name}-${each.key}"
  role   = aws_iam_role.stage[each.key].id
  policy = jsonencode(local.policy_documents[each.value.policy])
}

# Pulls the image and writes the jobs' logs. The jobs inject no secret (fetch, the only stage
# that reads the Polygon key, runs in Lambda; vacuum reads the database secret with its own
# role), so the managed policy is all iam.md's condvest-batch-execution needs.
resource "aws_iam_role" "batch_execution" {
  name               = "${local.name}-batch-execution"
  assume_role_policy = local.trust["ecs-tasks"]
  tags               = local.common_tags
}

resource "aws_iam_role_policy_attachment" "batch_execution" {
  role       = aws_iam_role.batch_execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# The status job and the function emit metrics in CloudWatch's Embedded Metric Format on
# stderr: CloudWatch Logs turns them into metrics, no cloudwatch:PutMetricData is needed.
