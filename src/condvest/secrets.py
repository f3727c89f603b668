"""Reading a secret from AWS Secrets Manager through botocore (which s3fs already brings).

Used for ``RDS_SECRET_ARN`` (postgres.secret_arn) and ``POLYGON_API_KEY_SECRET_ARN``
(polygon.api_key_secret_arn). The value is registered with the log redactor at once."""

from __future__ import annotations

import json
from typing import Any

from condvest.errors import CondvestError
from condvest.logging import redact, register_secret


def region_of(arn: str) -> str | None:
    parts = arn.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[2] == "secretsmanager":
        return parts[3] or None
    return None


def read_secret_string(
    arn: str,
    *,
    error: type[CondvestError],
    what: str,
    hint: str,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> str:
    """The SecretString of ``arn``; failures raise ``error`` with one line naming ``what``."""
    import botocore.exceptions
    import botocore.session

    if not arn.startswith("arn:") or len(arn.split(":")) < 7:
        # Never echo it: a key pasted into the ARN setting is the usual cause.
        raise error(
            f"the {what} secret ARN is not a Secrets Manager ARN "
            "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME); value not shown",
            hint=f"{hint}; a plain key belongs in the key setting, not the ARN setting",
        )

    session = botocore.session.get_session()
    region = region_of(arn) or region or session.get_config_variable("region")
    try:
        client = session.create_client(
            "secretsmanager", region_name=region or "us-east-1", endpoint_url=endpoint_url
        )
        answer = client.get_secret_value(SecretId=arn)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise error(f"cannot read the {what} secret {arn}: {code}", hint=hint) from None
    except botocore.exceptions.BotoCoreError as exc:
        detail = redact(" ".join(str(exc).split()))
        raise error(
            f"cannot reach Secrets Manager for {arn}: {detail}",
            hint="check the network, AWS credentials and the secrets endpoint setting",
        ) from None
    text = answer.get("SecretString")
    if not text:
        raise error(f"the {what} secret {arn} holds no SecretString", hint=hint)
    register_secret(str(text))
    return str(text)


def parse_json_secret(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
