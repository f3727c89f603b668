# Optional: the lake bucket itself, private and encrypted, with run records expiring.

resource "aws_s3_bucket" "lake" {
  count = var.create_bucket ? 1 : 0

  bucket = var.lake_bucket
  tags   = local.common_tags
}

resource "aws_s3_bucket_public_access_block" "lake" {
  count = var.create_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.lake[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  count = var.create_bucket && var.run_records_expire_days > 0 ? 1 : 0

  bucket = aws_s3_bucket.lake[0].id

  rule {
    id     = "condvest-run-records"
    status = "Enabled"

    filter {
      prefix = "${local.prefix_slash}processing_metadata/runs/"
    }

    expiration {
      days = var.run_records_expire_days
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {
      prefix = local.prefix_slash
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}
