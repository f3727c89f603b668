"""Where the PostgreSQL cache is and how to reach it: a DSN (``postgres.dsn``) or an RDS secret
(``postgres.secret_arn`` / ``RDS_SECRET_ARN``) read through botocore; and one-line errors that
never show the password."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from condvest.errors import DatabaseError
from condvest.logging import redact, register_secret
from condvest.secrets import parse_json_secret, read_secret_string
from condvest.settings import Settings

CONNECT_HINT = "check postgres.dsn (or RDS_SECRET_ARN) and that the server is reachable"
_SECRET_KEYS = ("host", "username", "password")


@dataclass(frozen=True)
class Target:
    """A resolved connection: the libpq conninfo (holds the password) and a safe description."""

    conninfo: str
    where: str
    """``user@host:port/dbname`` — for messages; never the password."""


def one_line(exc: BaseException) -> str:
    """libpq messages span lines ("…failed: Connection refused\\n\\tIs the server running…")."""
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    return redact("; ".join(line for line in lines if line))


def read_rds_secret(arn: str, settings: Settings) -> dict[str, Any]:
    """The RDS secret's JSON (host, port, username, password, dbname) from Secrets Manager."""
    text = read_secret_string(
        arn,
        error=DatabaseError,
        what="database",
        hint="check RDS_SECRET_ARN (postgres.secret_arn) and the secretsmanager:GetSecretValue "
        "permission",
        endpoint_url=settings.postgres.secrets_endpoint_url,
        region=settings.s3.region,
    )
    body = parse_json_secret(text)
    if body is None:
        raise DatabaseError(
            f"the database secret {arn} is not a JSON object",
            hint="an RDS secret holds host, port, username, password and dbname",
        )
    missing = [key for key in _SECRET_KEYS if not body.get(key)]
    if missing:
        raise DatabaseError(
            f"the database secret {arn} lacks {', '.join(missing)}",
            hint="an RDS secret holds host, port, username, password and dbname",
        )
    register_secret(str(body["password"]))
    return body


def _describe(params: dict[str, Any]) -> str:
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or 5432
    user = params.get("user") or "(default user)"
    dbname = params.get("dbname") or "(default db)"
    return f"{user}@{host}:{port}/{dbname}"


def resolve_target(settings: Settings) -> Target:
    """The conninfo to connect with, from ``postgres.dsn`` or else ``postgres.secret_arn``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    pg = settings.postgres
    params: dict[str, Any]
    if pg.dsn is not None:
        raw = pg.dsn.get_secret_value()
        register_secret(raw)
        try:
            params = conninfo_to_dict(raw)
        except Exception:
            # libpq's own message quotes the offending fragment, which may be the password.
            raise DatabaseError(
                "postgres.dsn is not a valid PostgreSQL connection string",
                hint="use a URL such as postgresql://user@host:5432/dbname (the password "
                "after 'user:') or key=value pairs such as 'host=… dbname=… user=…'",
            ) from None
        if params.get("password"):
            register_secret(str(params["password"]))
    elif pg.secret_arn:
        secret = read_rds_secret(pg.secret_arn, settings)
        params = {
            "host": secret["host"],
            "port": secret.get("port") or 5432,
            "user": secret["username"],
            "password": secret["password"],
            "dbname": secret.get("dbname") or secret.get("dbInstanceIdentifier") or "postgres",
        }
    else:
        raise DatabaseError(
            "PostgreSQL is off", hint="set postgres.dsn or RDS_SECRET_ARN (postgres.secret_arn)"
        )
    extra: dict[str, Any] = {"connect_timeout": pg.connect_timeout_s}
    if pg.sslmode:
        extra["sslmode"] = pg.sslmode
    params.setdefault("application_name", "condvest")
    try:
        conninfo = make_conninfo("", **{**params, **extra})
    except Exception:
        raise DatabaseError(
            "the PostgreSQL connection settings are not valid",
            hint="check postgres.dsn / the RDS secret's host, port and dbname",
        ) from None
    return Target(conninfo, _describe(params))


def connect(target: Target) -> Any:
    """An autocommit psycopg connection, or one clear :class:`DatabaseError` line."""
    import psycopg

    try:
        conn = psycopg.connect(target.conninfo, autocommit=True)
        # Bulk upserts stage batches in a temporary table: keep it in memory (session-wide,
        # settable only before the first temporary table is touched).
        conn.execute("set temp_buffers = '128MB'")
        return conn
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL {target.where}: {one_line(exc)}", hint=CONNECT_HINT
        ) from None
