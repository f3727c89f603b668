"""The original system's environment names, read below the ``CONDVEST_`` ones: its bucket and
prefix variables give the lake URI, the others map to one setting each."""

from __future__ import annotations

from collections.abc import Mapping


def legacy_bucket_uri(env: Mapping[str, str]) -> str | None:
    bucket = env.get("S3_BUCKET") or env.get("S3_BUCKET_NAME") or env.get("S3_DATALAKE_BUCKET")
    if not bucket:
        return None
    prefix = env.get("S3_PREFIX", "").strip("/")
    # The original jobs set S3_PREFIX to the bronze table ("bronze/raw_ohlcv"), not the lake root.
    for suffix in ("bronze/raw_ohlcv", "bronze"):
        if prefix == suffix:
            prefix = ""
        elif prefix.endswith("/" + suffix):
            prefix = prefix[: -len(suffix) - 1]
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


# Original system's environment names -> (section, key). Applied below CONDVEST_ names.
LEGACY_ENV: dict[str, tuple[str, str]] = {
    "AWS_REGION": ("s3", "region"),
    "MODE": ("consolidate", "mode"),
    "MAX_WORKERS": ("consolidate", "workers"),
    "RETENTION_DAYS": ("consolidate", "retention_days"),
    "SKIP_CLEANUP": ("consolidate", "skip_cleanup"),
    "RESAMPLING_INTERVALS": ("resample", "intervals"),
    "FORCE_FULL_RESAMPLE": ("resample", "force_full"),
    "POLYGON_API_KEY": ("polygon", "api_key"),
    "MASSIVE_API_KEY": ("polygon", "api_key"),
    "POLYGON_API_KEY_SECRET_ARN": ("polygon", "api_key_secret_arn"),
    "RDS_SECRET_ARN": ("postgres", "secret_arn"),
}
LEGACY_BUCKET_ENV = ("S3_BUCKET", "S3_BUCKET_NAME", "S3_DATALAKE_BUCKET", "S3_PREFIX")
