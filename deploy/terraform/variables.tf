# -- the image and the lake -----------------------------------------------------------------------
variable "image_uri" {
  description = "The condvest image (the repository's Dockerfile) in ECR, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/condvest:1.0.0."
  type        = string

  validation {
    condition     = length(trimspace(var.image_uri)) > 0
    error_message = "image_uri is required."
  }
}

variable "lake_bucket" {
  description = "The S3 bucket of the lake."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.lake_bucket))
    error_message = "lake_bucket must be an S3 bucket name (3-63 lower-case letters, digits, '.', '-')."
  }
}

variable "lake_prefix" {
  description = "The lake's key prefix inside the bucket, without slashes at either end; \"\" for a lake at the bucket root."
  type        = string
  default     = "lake"

  validation {
    condition     = !startswith(var.lake_prefix, "/") && !endswith(var.lake_prefix, "/") && !strcontains(var.lake_prefix, "//")
    error_message = "lake_prefix has no slash at either end (\"lake\", \"data/lake\" or \"\")."
  }
}

variable "create_bucket" {
  description = "Create the lake bucket (private, encrypted, with a lifecycle rule on processing_metadata/runs/). false: the bucket exists."
  type        = bool
  default     = false
}

variable "run_records_expire_days" {
  description = "With create_bucket: run records under processing_metadata/runs/ expire after this many days (0: never). A stage's latest.json is rewritten on every run, so only a stage idle that long loses its last run."
  type        = number
  default     = 400

  validation {
    condition     = var.run_records_expire_days >= 0 && floor(var.run_records_expire_days) == var.run_records_expire_days
    error_message = "run_records_expire_days is a whole number of days, 0 or more."
  }
}

# -- networking and secrets -----------------------------------------------------------------------
variable "subnet_ids" {
  description = "Subnets of the Fargate compute environment: a route to S3 (a gateway endpoint is enough) and, for the status job's metrics, to CloudWatch."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups of the Fargate tasks (outbound HTTPS)."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "security_group_ids needs at least one security group."
  }
}

variable "assign_public_ip" {
  description = "Give Fargate tasks a public IP (subnets with an internet gateway and no NAT)."
  type        = bool
  default     = false
}

variable "polygon_secret_arn" {
  description = "Secrets Manager ARN of the Polygon API key (read by the fetch function)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:", var.polygon_secret_arn))
    error_message = "polygon_secret_arn must be a Secrets Manager ARN."
  }
}

variable "database_secret_arn" {
  description = "Secrets Manager ARN of the PostgreSQL (RDS) secret, read by fetch and vacuum; null: PostgreSQL off."
  type        = string
  default     = null

  validation {
    condition     = var.database_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.database_secret_arn))
    error_message = "database_secret_arn must be a Secrets Manager ARN or null."
  }
}

variable "batch_service_role_arn" {
  description = "The Batch service role of the compute environment; null: AWS's service-linked role (AWSServiceRoleForBatch)."
  type        = string
  default     = null
}

# -- alerts ---------------------------------------------------------------------------------------
variable "alert_email" {
  description = "An e-mail address subscribed to the alerts topic (AWS sends a confirmation mail); null: none."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an e-mail address or null."
  }
}

variable "alert_topic_arn" {
  description = "An existing SNS topic for the alerts instead of the module's condvest-alerts (its policy must let events.amazonaws.com and cloudwatch.amazonaws.com publish)."
  type        = string
  default     = null

  validation {
    condition     = var.alert_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:", var.alert_topic_arn))
    error_message = "alert_topic_arn must be an SNS topic ARN or null."
  }
}

# -- the stages -----------------------------------------------------------------------------------
variable "consolidate_shards" {
  description = "Consolidate as an array job of this many shards (the job definition's --shards N, the array size N); 1: a plain job."
  type        = number
  default     = 4

  validation {
    condition     = var.consolidate_shards >= 1 && var.consolidate_shards <= 10000 && floor(var.consolidate_shards) == var.consolidate_shards
    error_message = "consolidate_shards is a whole number from 1 to 10000 (Batch's largest array)."
  }
}

variable "silver_intervals" {
  description = "Silver bar sizes in sessions (resample.intervals): the resample job's intervals, the dashboard's silver lag and the Glue tables."
  type        = list(number)
  default     = [3, 5, 8, 13, 21, 34]

  validation {
    condition     = length(var.silver_intervals) > 0 && alltrue([for i in var.silver_intervals : i >= 2 && floor(i) == i])
    error_message = "silver_intervals are whole numbers of sessions, 2 or more."
  }
}

variable "batch_resources" {
  description = "vCPU and memory (MiB) per Batch job; a Fargate combination. Defaults: docs/deploy/batch.md's 2 vCPU / 4 GB."
  type = map(object({
    vcpu   = number
    memory = number
  }))
  default = {
    consolidate = { vcpu = 2, memory = 4096 }
    resample    = { vcpu = 2, memory = 4096 }
    vacuum      = { vcpu = 2, memory = 4096 }
    status      = { vcpu = 2, memory = 4096 }
  }

  validation {
    condition     = length(setsubtract(["consolidate", "resample", "vacuum", "status"], keys(var.batch_resources))) == 0 && length(setsubtract(keys(var.batch_resources), ["consolidate", "resample", "vacuum", "status"])) == 0
    error_message = "batch_resources has exactly the keys consolidate, resample, vacuum and status."
  }

  # Fargate's task sizes: https://docs.aws.amazon.com/batch/latest/APIReference/API_ResourceRequirement.html
  validation {
    condition = alltrue([for r in values(var.batch_resources) : (
      r.vcpu == 0.25 ? contains([512, 1024, 2048], r.memory) :
      r.vcpu == 0.5 ? r.memory >= 1024 && r.memory <= 4096 && r.memory % 1024 == 0 :
      r.vcpu == 1 ? r.memory >= 2048 && r.memory <= 8192 && r.memory % 1024 == 0 :
      r.vcpu == 2 ? r.memory >= 4096 && r.memory <= 16384 && r.memory % 1024 == 0 :
      r.vcpu == 4 ? r.memory >= 8192 && r.memory <= 30720 && r.memory % 1024 == 0 :
      r.vcpu == 8 ? r.memory >= 16384 && r.memory <= 61440 && r.memory % 4096 == 0 :
      r.vcpu == 16 ? r.memory >= 32768 && r.memory <= 122880 && r.memory % 8192 == 0 :
      false
    )])
    error_message = "Each batch_resources entry must be a Fargate combination: 0.25 vCPU 512/1024/2048 MiB; 0.5 vCPU 1-4 GiB; 1 vCPU 2-8 GiB; 2 vCPU 4-16 GiB; 4 vCPU 8-30 GiB (1 GiB steps); 8 vCPU 16-60 GiB (4 GiB steps); 16 vCPU 32-120 GiB (8 GiB steps)."
  }
}

variable "max_vcpus" {
  description = "The Fargate compute environment's vCPU ceiling (consolidate_shards x its vCPU runs at once when it allows)."
  type        = number
  default     = 16

  validation {
    condition     = var.max_vcpus >= 1
    error_message = "max_vcpus is 1 or more."
  }
}

variable "lambda_memory" {
  description = "The function's memory (MiB); 2048 also buys CPU for parquet encoding (docs/deploy/lambda.md)."
  type        = number
  default     = 2048

  validation {
    condition     = var.lambda_memory >= 128 && var.lambda_memory <= 10240
    error_message = "lambda_memory is from 128 to 10240 MiB."
  }
}

variable "polygon_requests_per_minute" {
  description = "CONDVEST_POLYGON__REQUESTS_PER_MINUTE of the fetch function (0: no client-side limit, a paid plan); null: condvest's default."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the function's and the jobs' log groups."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

# -- schedules (New York time) --------------------------------------------------------------------
variable "enable_schedules" {
  description = "Create the EventBridge Scheduler schedules (false: start the stages yourself)."
  type        = bool
  default     = true
}

variable "schedule_times" {
  description = "HH:MM New York time (America/New_York, DST followed): fetch, consolidate, resample and status on trading weekdays, vacuum weekly on vacuum_day."
  type = object({
    fetch       = optional(string, "16:30")
    consolidate = optional(string, "17:00")
    resample    = optional(string, "17:30")
    status      = optional(string, "18:00")
    vacuum      = optional(string, "08:00")
  })
  default = {}

  validation {
    condition     = alltrue([for t in values(var.schedule_times) : can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", t))])
    error_message = "schedule_times are HH:MM (00:00 to 23:59), New York time."
  }
}

variable "vacuum_day" {
  description = "The weekday of the weekly vacuum (SUN, MON, ...)."
  type        = string
  default     = "SUN"

  validation {
    condition     = contains(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], var.vacuum_day)
    error_message = "vacuum_day is one of SUN, MON, TUE, WED, THU, FRI, SAT."
  }
}

# -- observability --------------------------------------------------------------------------------
variable "metrics_namespace" {
  description = "The CloudWatch namespace condvest emits its metrics to (CONDVEST_METRICS__NAMESPACE of the function and every job)."
  type        = string
  default     = "condvest"

  validation {
    condition     = can(regex("^[A-Za-z0-9.\\-_/#: ]{1,255}$", var.metrics_namespace)) && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace is 1-255 of A-Z a-z 0-9 . - _ / # : and space, not AWS/..."
  }
}

variable "metrics_lake_dimension" {
  description = "The value of the Lake dimension condvest emits; null: the lake URI (s3://<bucket>/<prefix>)."
  type        = string
  default     = null
}

variable "freshness_period_seconds" {
  description = "The freshness alarm looks at the largest SessionsBehind over this period; no data in it (status did not run) is breaching."
  type        = number
  default     = 86400

  validation {
    condition     = contains([60, 300, 900, 3600, 21600, 86400], var.freshness_period_seconds)
    error_message = "freshness_period_seconds is one of 60, 300, 900, 3600, 21600, 86400."
  }
}

variable "enable_dashboard" {
  description = "Create the condvest CloudWatch dashboard."
  type        = bool
  default     = true
}

variable "enable_glue" {
  description = "Create the Glue database and tables over the lake (Athena, Spark, Trino)."
  type        = bool
  default     = true
}

variable "glue_database_name" {
  description = "The Glue database of the lake's tables."
  type        = string
  default     = "condvest"
}

variable "tags" {
  description = "Tags on every resource that takes them."
  type        = map(string)
  default     = {}
}
