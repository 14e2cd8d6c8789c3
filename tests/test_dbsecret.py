"""Database credentials from Secrets Manager (registry/dbsecret.py), against
moto's Secrets Manager: the DSN, its quoting, TLS, the host/dbname
overrides, the per-container cache, the hook in db.py, and failures that
answer 503 instead of 500."""

from __future__ import annotations

import json
import time
import uuid

import psycopg2
import psycopg2.extensions
import pytest

from registry import db, dbsecret, settings
from registry.db import DatabaseUnavailable

SECRET = {
    "engine": "postgres",
    "host": "registry.cluster-abc.us-east-1.rds.amazonaws.com",
    "port": 5432,
    "dbname": "registry",
    "username": "registry_admin",
    "password": "s3cr3t-Passw0rd",
}


@pytest.fixture
def secrets(monkeypatch):
    """moto's Secrets Manager; DATABASE_URL unset, as in AWS."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        client = boto3.client("secretsmanager")
        monkeypatch.delenv("DATABASE_URL", raising=False)
        for name in ("DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_NAME"):
            monkeypatch.delenv(name, raising=False)
        settings.get_settings.cache_clear()
        dbsecret.reset()
        db.close()

        def create(value) -> str:
            # A name of its own: moto keeps state while the session's mock is active.
            name = f"registry/db-{uuid.uuid4()}"
            arn = client.create_secret(Name=name, SecretString=value if isinstance(value, str) else json.dumps(value))["ARN"]
            monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
            return arn

        create.client = client
        yield create
    dbsecret.reset()
    db.close()
    monkeypatch.undo()
    settings.get_settings.cache_clear()


def test_dsn_from_the_secret_requires_tls(secrets):
    secrets(SECRET)
    parsed = psycopg2.extensions.parse_dsn(dbsecret.dsn())
    assert parsed == {
        "host": SECRET["host"],
        "port": "5432",
        "dbname": "registry",
        "user": "registry_admin",
        "password": "s3cr3t-Passw0rd",
        "sslmode": "require",
    }


def test_proxy_endpoint_and_database_name_override_the_secret(secrets, monkeypatch):
    # RDS-managed master secrets hold only username and password.
    secrets({"username": "registry_admin", "password": "pw"})
    monkeypatch.setenv("DATABASE_HOST", "registry-prod.proxy-abc.us-east-1.rds.amazonaws.com")
    monkeypatch.setenv("DATABASE_NAME", "molecule")
    parsed = psycopg2.extensions.parse_dsn(dbsecret.dsn())
    assert parsed["host"] == "registry-prod.proxy-abc.us-east-1.rds.amazonaws.com"
    assert parsed["dbname"] == "molecule" and parsed["port"] == "5432" and parsed["sslmode"] == "require"


@pytest.mark.parametrize("password", ["it's", "back\\slash", "sp ace", "a=b", "'", "\\'", "ünïcødé", "x'; DROP TABLE workspaces; --"])
def test_any_password_survives_quoting(secrets, password):
    secrets({**SECRET, "password": password})
    assert psycopg2.extensions.parse_dsn(dbsecret.dsn())["password"] == password


def test_libpq_accepts_the_dsn_as_built(secrets, monkeypatch):
    """libpq itself parses it (a quoting slip is a ProgrammingError "invalid
    dsn"); with nothing listening the answer is a connection failure."""
    secrets({**SECRET, "host": "127.0.0.1", "port": 1, "password": "it's a \\ test"})
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(dbsecret.dsn(), connect_timeout=1)


def test_secret_is_cached_per_container(secrets):
    arn = secrets(SECRET)
    first = dbsecret.dsn()
    secrets.client.put_secret_value(SecretId=arn, SecretString=json.dumps({**SECRET, "password": "rotated"}))
    # Within max_age the container keeps its copy: no Secrets Manager call
    # per connection.
    assert dbsecret.dsn() == first
    assert dbsecret.SECRET_MAX_AGE_SECONDS == 300
    # A new container (or an expired entry) sees the rotated password.
    dbsecret.reset()
    assert psycopg2.extensions.parse_dsn(dbsecret.dsn())["password"] == "rotated"


def test_cache_expires_after_max_age(secrets, monkeypatch):
    monkeypatch.setattr(dbsecret, "SECRET_MAX_AGE_SECONDS", 1)
    arn = secrets(SECRET)
    dbsecret.dsn()
    secrets.client.put_secret_value(SecretId=arn, SecretString=json.dumps({**SECRET, "password": "rotated"}))
    assert psycopg2.extensions.parse_dsn(dbsecret.dsn())["password"] == SECRET["password"]
    time.sleep(1.1)
    assert psycopg2.extensions.parse_dsn(dbsecret.dsn())["password"] == "rotated"


@pytest.mark.parametrize(
    "value, reason",
    [
        ({"username": "u", "password": "p", "dbname": "d"}, "host"),
        ({"host": "h", "password": "p", "dbname": "d"}, "username"),
        ({"host": "h", "username": "u", "dbname": "d"}, "password"),
        ({"host": "h", "username": "u", "password": "p"}, "dbname"),
        (["not", "an", "object"], "not a JSON object"),
        ({"host": "h", "username": "u", "password": 12345, "dbname": "d"}, "non-string"),
    ],
)
def test_incomplete_secret_is_unavailable_and_says_what_is_missing(secrets, value, reason):
    secrets(value)
    with pytest.raises(DatabaseUnavailable, match=reason) as raised:
        dbsecret.dsn()
    # Field names only, never the secret's values.
    assert "12345" not in str(raised.value) and "registry_admin" not in str(raised.value)


def test_unreadable_secret_is_unavailable(secrets, monkeypatch):
    secrets(SECRET)
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    with pytest.raises(DatabaseUnavailable, match="could not be read"):
        dbsecret.dsn()


def test_secret_that_is_not_json_is_unavailable(secrets):
    secrets("host=h user=u password=p")
    with pytest.raises(DatabaseUnavailable, match="could not be read"):
        dbsecret.dsn()


def test_not_configured():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DATABASE_SECRET_ARN", raising=False)
        assert dbsecret.configured() is False
        with pytest.raises(DatabaseUnavailable, match="DATABASE_SECRET_ARN"):
            dbsecret.dsn()
        mp.setenv("DATABASE_SECRET_ARN", "  ")
        assert dbsecret.configured() is False


# ---------------------------------------------------------------- the db.py hook


def test_db_uses_the_secret_when_database_url_is_unset(secrets):
    secrets(SECRET)
    assert db._dsn_from_settings() == dbsecret.dsn()


def test_database_url_wins_when_set(secrets, monkeypatch):
    secrets(SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgresql://local@127.0.0.1/registry")
    settings.get_settings.cache_clear()
    assert db._dsn_from_settings() == "postgresql://local@127.0.0.1/registry"


def test_neither_configured_is_unavailable(secrets, monkeypatch):
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    with pytest.raises(DatabaseUnavailable, match="DATABASE_URL is not configured"):
        db._dsn_from_settings()


def test_connection_with_an_unreadable_secret_is_unavailable(secrets, monkeypatch):
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    with pytest.raises(DatabaseUnavailable):
        db.connection()


def test_handler_answers_503_when_the_secret_cannot_be_read(secrets, servers, aws, monkeypatch):
    """In AWS a broken secret is an outage of the database: 503 + Retry-After, no driver text."""
    from conftest import Registry

    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings.get_settings.cache_clear()
    db.close()
    answer = Registry().register()
    assert answer.status == 503, answer.raw
    assert answer.headers["retry-after"] == "5"
    assert answer.body == {"error": "database unavailable, retry later"}
