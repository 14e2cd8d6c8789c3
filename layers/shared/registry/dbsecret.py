"""Postgres credentials from Secrets Manager, for the functions in AWS.

In AWS there is no DATABASE_URL: a password in a Lambda environment variable
is readable by anyone who can read the function's configuration. Instead:

- ``DATABASE_SECRET_ARN``  the RDS secret (JSON: username, password, host,
                           port, dbname), read through Powertools Parameters
                           and cached per container for SECRET_MAX_AGE_SECONDS
- ``DATABASE_HOST``        optional; the RDS Proxy endpoint, which replaces
                           the secret's host (the secret names the cluster)
- ``DATABASE_NAME``        optional; replaces the secret's dbname (RDS-managed
                           master secrets carry no dbname at all)

The DSN always asks for TLS (``sslmode=require``): the proxy refuses clear
text connections (RequireTLS) and so do we.

db._dsn_from_settings() calls dsn() when DATABASE_URL is unset and
DATABASE_SECRET_ARN is set; a secret that cannot be read is a
DatabaseUnavailable (503), never a 500.
"""

from __future__ import annotations

import os
from typing import Any

from registry.db import DatabaseUnavailable

# A rotated password reaches running containers within this many seconds;
# in between only new connections are affected, open ones keep working.
SECRET_MAX_AGE_SECONDS = 300

_provider = None


def configured() -> bool:
    """True when the database credentials come from a secret."""
    return bool(os.environ.get("DATABASE_SECRET_ARN", "").strip())


def _secrets():
    """The container's Powertools SecretsProvider (and its cache)."""
    global _provider
    if _provider is None:
        # Imported on first use: a container that never opens a connection
        # (or runs with DATABASE_URL) does not pay for boto3 at cold start.
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from botocore.config import Config

        # Short time-outs: an unreachable Secrets Manager endpoint must cost
        # a second or two and an honest 503, not the function's time-out.
        _provider = SecretsProvider(boto_config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"}))
    return _provider


def reset() -> None:
    """Forget the provider and its cached secret (tests, rotation drills)."""
    global _provider
    _provider = None


def _quote(value: str) -> str:
    # libpq key/value syntax: single quotes, backslash escapes ' and \.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dsn_from_secret(secret: Any, *, host: str | None = None, dbname: str | None = None) -> str:
    """A libpq DSN from an RDS secret; host and dbname override the secret's."""
    if not isinstance(secret, dict):
        raise DatabaseUnavailable("database secret is not a JSON object")
    fields = {
        "host": host or secret.get("host"),
        "port": str(secret.get("port") or 5432),
        "dbname": dbname or secret.get("dbname"),
        "user": secret.get("username"),
        "password": secret.get("password"),
    }
    secret_keys = {"user": "username"}  # libpq's name -> the secret's
    missing = [secret_keys.get(name, name) for name, value in fields.items() if value in (None, "")]
    if missing:
        # Names only: the secret's values never reach a log line or a response.
        raise DatabaseUnavailable(f"database secret lacks {', '.join(missing)} (set DATABASE_HOST / DATABASE_NAME or fix the secret)")
    if not all(isinstance(value, str) for value in fields.values()):
        raise DatabaseUnavailable("database secret has a non-string credential")
    fields["sslmode"] = "require"
    return " ".join(f"{name}={_quote(value)}" for name, value in fields.items())


def dsn() -> str:
    """The DSN for this container, from the (cached) secret."""
    arn = os.environ.get("DATABASE_SECRET_ARN", "").strip()
    if not arn:
        raise DatabaseUnavailable("DATABASE_SECRET_ARN is not configured")
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    try:
        secret = _secrets().get(arn, max_age=SECRET_MAX_AGE_SECONDS, transform="json")
    except (GetParameterError, TransformParameterError) as err:
        raise DatabaseUnavailable("database secret could not be read") from err
    return dsn_from_secret(
        secret,
        host=os.environ.get("DATABASE_HOST", "").strip() or None,
        dbname=os.environ.get("DATABASE_NAME", "").strip() or None,
    )
