"""The migration custom resource (functions/migrate/app.py), offline.

CloudFormation's side is played by an HTTP server on 127.0.0.1 that takes
the response PUT, as S3 takes it behind the pre-signed ResponseURL; the
database is the real test Postgres. Every request gets exactly one answer,
SUCCESS or FAILED, and no exception escapes while an answer was delivered.
"""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from conftest import custom_resource_event as request

from devstack import harness


def migrate_context(seconds: float = 300) -> harness.LambdaContext:
    """The migration function's context: its 300 s time-out, really counted down."""
    return harness.LambdaContext("registry-migrate", seconds)


@pytest.fixture
def app(monkeypatch):
    module = harness.load_function("migrate")
    monkeypatch.setattr(module, "PUT_BACKOFF_SECONDS", 0.01)  # the retries, without the waiting
    return module


@pytest.fixture
def fresh_database(servers):
    """An empty database on the test server, dropped afterwards."""
    from registry import settings

    name = f"migrate_fn_{time.monotonic_ns()}"
    harness.create_database(servers.database_url, name)
    dsn = servers.proxy.dsn(dbname=name)  # through the RDS Proxy stand-in, as in AWS
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", dsn)
        settings.get_settings.cache_clear()
        yield dsn
    settings.get_settings.cache_clear()
    harness.drop_database(servers.database_url, name)


@pytest.fixture
def bad_database(servers):
    """DATABASE_URL pointing where no Postgres listens, with a password."""
    from registry import settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", "postgresql://registry:Hunter2-secret@127.0.0.1:1/registry?connect_timeout=1")
        settings.get_settings.cache_clear()
        yield
    settings.get_settings.cache_clear()


def _tables(dsn: str) -> set[str]:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = {row[0] for row in cur.fetchall()}
    conn.close()
    return tables


def _applied(dsn: str) -> list[str]:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT filename FROM registry_schema_migrations ORDER BY filename")
        rows = [row[0] for row in cur.fetchall()]
    conn.close()
    return rows


def test_create_migrates_and_answers_success(app, cfn, fresh_database):
    from registry import migrate

    event = request("Create", cfn.url)
    result = app.lambda_handler(event, migrate_context())
    (answer,) = cfn.answers
    assert answer["Status"] == "SUCCESS" and result["Status"] == "SUCCESS"
    files = [name for name, _ in migrate.planned()]
    assert _applied(fresh_database) == files
    assert {"workspaces", "workspace_auth_tokens", "structure_events", "a2a_queue"} <= _tables(fresh_database)
    # The answer CloudFormation needs, for this very request.
    assert answer["RequestId"] == event["RequestId"] and answer["StackId"] == event["StackId"]
    assert answer["LogicalResourceId"] == "SchemaMigration"
    assert answer["PhysicalResourceId"] == app.PHYSICAL_ID
    assert answer["Data"] == {"Applied": ",".join(files), "AppliedCount": str(len(files))}
    # The PUT goes to the pre-signed URL as is, without a content type that
    # would break S3's signature.
    (put,) = cfn.requests
    assert put["path"] == "/cfn-response?X-Amz-Signature=abc"
    assert put["headers"].get("Content-Type", "") == ""
    assert len(put["body"].encode()) < 4096


def test_update_is_idempotent_and_keeps_the_physical_id(app, cfn, fresh_database):
    app.lambda_handler(request("Create", cfn.url), migrate_context())
    before = _applied(fresh_database)
    app.lambda_handler(request("Update", cfn.url, physical_id=app.PHYSICAL_ID), migrate_context())
    app.lambda_handler(request("Update", cfn.url, physical_id=app.PHYSICAL_ID), migrate_context())
    first, *updates = cfn.answers
    for answer in updates:
        assert answer["Status"] == "SUCCESS"
        assert answer["Reason"] == "schema is up to date" and answer["Data"]["AppliedCount"] == "0"
        assert answer["PhysicalResourceId"] == app.PHYSICAL_ID
    assert _applied(fresh_database) == before


def test_same_sql_as_the_local_command(app, cfn, fresh_database, servers):
    """`make migrate` (python -m registry.migrate) and the custom resource
    record the same files with the same checksums."""
    from registry import migrate

    app.lambda_handler(request("Create", cfn.url), migrate_context())
    conn = psycopg2.connect(fresh_database)
    with conn.cursor() as cur:
        cur.execute("SELECT filename, sha256 FROM registry_schema_migrations ORDER BY filename")
        by_resource = cur.fetchall()
    conn.close()
    assert migrate.main(["--database-url", fresh_database]) == 0  # nothing left to apply
    import hashlib

    assert by_resource == sorted((name, hashlib.sha256(p.read_text().encode()).hexdigest()) for name, p in migrate.planned())


def test_delete_succeeds_without_touching_the_database(app, cfn, bad_database):
    result = app.lambda_handler(request("Delete", cfn.url, physical_id=app.PHYSICAL_ID), migrate_context())
    (answer,) = cfn.answers
    assert answer["Status"] == "SUCCESS" == result["Status"]
    assert answer["PhysicalResourceId"] == app.PHYSICAL_ID


def test_unreachable_database_answers_failed_without_leaking_the_password(app, cfn, bad_database):
    started = time.monotonic()
    result = app.lambda_handler(request("Create", cfn.url), migrate_context())  # no exception escapes
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert answer["Reason"].startswith("migration failed: OperationalError")
    assert "Hunter2" not in cfn.requests[0]["body"]
    # A failed Create still names a physical id, so the rollback's Delete
    # reaches this handler and succeeds.
    assert answer["PhysicalResourceId"] == app.PHYSICAL_ID
    assert time.monotonic() - started < 10


def test_malformed_connection_string_answers_failed(app, cfn, servers):
    from registry import settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", "host=h password=Hunter2-secret dbname")  # no '=' after dbname
        settings.get_settings.cache_clear()
        result = app.lambda_handler(request("Create", cfn.url), migrate_context())
    settings.get_settings.cache_clear()
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert answer["Reason"] == "the database connection string is not valid"
    assert "Hunter2" not in cfn.requests[0]["body"]


def test_no_database_configured_answers_failed(app, cfn, servers):
    from registry import settings

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DATABASE_URL", raising=False)
        mp.delenv("DATABASE_SECRET_ARN", raising=False)
        settings.get_settings.cache_clear()
        result = app.lambda_handler(request("Update", cfn.url, physical_id=app.PHYSICAL_ID), migrate_context())
    settings.get_settings.cache_clear()
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert "DATABASE_SECRET_ARN is not configured" in answer["Reason"]


def test_failing_migration_answers_failed(app, cfn, fresh_database, monkeypatch):
    from registry import migrate

    def broken(dsn, **_timeouts):
        raise RuntimeError("migration 0002_event_outbox.sql changed after it was applied")

    monkeypatch.setattr(migrate, "apply", broken)
    result = app.lambda_handler(request("Update", cfn.url, physical_id=app.PHYSICAL_ID), migrate_context())
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert answer["Reason"] == "migration failed: RuntimeError: migration 0002_event_outbox.sql changed after it was applied"


def test_answers_before_the_function_times_out(app, cfn, fresh_database, monkeypatch):
    """A migration that would outlive the function: FAILED is sent while
    the function still has RESPONSE_RESERVE_SECONDS left."""
    from registry import migrate

    release = threading.Event()
    seen_timeouts = []

    def slow(dsn, **timeouts):
        seen_timeouts.append(timeouts)
        release.wait(30)
        return []

    monkeypatch.setattr(migrate, "apply", slow)
    context = migrate_context(seconds=app.RESPONSE_RESERVE_SECONDS + 1.5)
    started = time.monotonic()
    try:
        result = app.lambda_handler(request("Create", cfn.url), context)
    finally:
        release.set()
    elapsed = time.monotonic() - started
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert "did not finish" in answer["Reason"]
    assert elapsed < 3 and context.get_remaining_time_in_millis() > 10_000
    # The database is told the same deadline, so it stops too; never
    # through libpq startup options, which RDS Proxy refuses.
    (timeouts,) = seen_timeouts
    assert 0 < timeouts["statement_timeout_ms"] <= 1500 and 0 < timeouts["lock_timeout_ms"] <= timeouts["statement_timeout_ms"]


def test_statement_timeout_reaches_the_server(app, cfn, fresh_database, monkeypatch, tmp_path):
    """The deadline really applies on the server: a migration that outlives
    it is cancelled by Postgres, and the answer is FAILED."""
    from registry import migrate

    (tmp_path / "0001_slow.sql").write_text("SELECT pg_sleep(30);\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    monkeypatch.setattr(app, "RESPONSE_RESERVE_SECONDS", 0)
    started = time.monotonic()
    result = app.lambda_handler(request("Create", cfn.url), migrate_context(seconds=2.5))
    assert time.monotonic() - started < 5
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert "QueryCanceled" in answer["Reason"] or "did not finish" in answer["Reason"]
    # Whichever answered first, the server itself stops the statement at the
    # deadline: nothing keeps running after FAILED was reported.
    conn = psycopg2.connect(fresh_database)
    conn.autocommit = True
    try:
        for _ in range(40):
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'")
                if cur.fetchone()[0] == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("the migration's statement still runs after its deadline")
        with conn.cursor() as cur:  # rolled back whole, the tracking table's creation too
            cur.execute("SELECT to_regclass('registry_schema_migrations')")
            assert cur.fetchone() == (None,)
    finally:
        conn.close()


def test_unknown_request_type_answers_failed(app, cfn, servers):
    result = app.lambda_handler(request("Rename", cfn.url), migrate_context())
    (answer,) = cfn.answers
    assert answer["Status"] == "FAILED" == result["Status"]
    assert "unknown RequestType" in answer["Reason"]


def test_response_put_is_retried(app, cfn, fresh_database):
    cfn.fail_next = 2
    result = app.lambda_handler(request("Create", cfn.url), migrate_context())
    assert [r["status"] for r in cfn.requests] == [500, 500, 200]
    assert result["Status"] == "SUCCESS" and cfn.answers[0]["Status"] == "SUCCESS"


def test_undeliverable_answer_raises_so_lambda_retries(app, cfn, fresh_database):
    """If CloudFormation cannot be told, the invocation fails: Lambda's
    asynchronous retry runs the (idempotent) handler again."""
    cfn.fail_next = 99
    with pytest.raises(app.ResponseNotDelivered):
        app.lambda_handler(request("Create", cfn.url), migrate_context())
    assert len(cfn.requests) == app.PUT_ATTEMPTS
