# Glue tables over the lake, read in place by Athena, Spark or Trino (paths: core/layout.py,
# columns: core/schema.py). silver_<N>d: one table per interval, partitions year/month by
# projection (no crawler, no MSCK REPAIR). bronze_ohlcv: every symbol's parquet files under
# bronze/raw_ohlcv/ (data.parquet plus the date= files not yet merged or not yet deleted; see
# docs/deploy/terraform.md for the view that reads each row once).

locals {
  parquet = {
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    serde         = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
  }

  bronze_columns = [
    { name = "symbol", type = "string" },
    { name = "date", type = "date" },
    { name = "open", type = "double" },
    { name = "high", type = "double" },
    { name = "low", type = "double" },
    { name = "close", type = "double" },
    { name = "volume", type = "double" },
    { name = "vwap", type = "double" },
    { name = "transactions", type = "bigint" },
    { name = "fetched_at", type = "timestamp" },
    { name = "source", type = "string" },
  ]

  silver_columns = [
    { name = "symbol", type = "string" },
    { name = "start_date", type = "date" },
    { name = "end_date", type = "date" },
    { name = "open", type = "double" },
    { name = "high", type = "double" },
    { name = "low", type = "double" },
    { name = "close", type = "double" },
    { name = "volume", type = "double" },
    { name = "vwap", type = "double" },
    { name = "transactions", type = "bigint" },
    { name = "sessions", type = "int" },
    { name = "complete", type = "boolean" },
  ]

  lake_location = "s3://${var.lake_bucket}/${local.prefix_slash}"
}

resource "aws_glue_catalog_database" "lake" {
  count = var.enable_glue ? 1 : 0

  name        = var.glue_database_name
  description = "condvest lake ${local.lake_uri}"
}

resource "aws_glue_catalog_table" "bronze_ohlcv" {
  count = var.enable_glue ? 1 : 0

  name          = "bronze_ohlcv"
  database_name = aws_glue_catalog_database.lake[0].name
  table_type    = "EXTERNAL_TABLE"
  parameters    = { classification = "parquet", EXTERNAL = "TRUE" }

  storage_descriptor {
    location      = "${local.lake_location}bronze/raw_ohlcv/"
    input_format  = local.parquet.input_format
    output_format = local.parquet.output_format

    ser_de_info {
      serialization_library = local.parquet.serde
    }

    dynamic "columns" {
      for_each = local.bronze_columns
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

resource "aws_glue_catalog_table" "silver" {
  for_each = var.enable_glue ? toset([for i in var.silver_intervals : tostring(i)]) : toset([])

  name          = "silver_${each.key}d"
  database_name = aws_glue_catalog_database.lake[0].name
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification              = "parquet"
    EXTERNAL                    = "TRUE"
    "projection.enabled"        = "true"
    "projection.year.type"      = "integer"
    "projection.year.range"     = "1970,2100"
    "projection.year.digits"    = "4"
    "projection.month.type"     = "integer"
    "projection.month.range"    = "1,12"
    "projection.month.digits"   = "2"
    "storage.location.template" = "${local.lake_location}silver/silver_${each.key}d/year=$${year}/month=$${month}/"
  }

  partition_keys {
    name = "year"
    type = "string"
  }

  partition_keys {
    name = "month"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_location}silver/silver_${each.key}d/"
    input_format  = local.parquet.input_format
    output_format = local.parquet.output_format

    ser_de_info {
      serialization_library = local.parquet.serde
    }

    dynamic "columns" {
      for_each = local.silver_columns
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}
