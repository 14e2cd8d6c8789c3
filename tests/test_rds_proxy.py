"""The RDS Proxy stand-in (devstack/rdsproxy.py): what it refuses, what it
counts as pinning, and that the registry's own connections pass through it.

The session's ``servers`` fixture already routes every function through a
stand-in and checks its pins at the end of the run (tests/conftest.py);
these tests use a stand-in of their own where they provoke refusals or pins,
so the session's record stays the registry's."""

import re
import struct
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from conftest import new_id
from devstack import harness
from devstack.rdsproxy import (
    OPTIONS_REFUSED,
    TLS_REQUIRED,
    UPSTREAM_UNAVAILABLE,
    ProxyStandIn,
    _Inspector,
    is_transaction_scoped,
    pinning_reasons,
)


@pytest.fixture
def proxy(servers):
    with ProxyStandIn(servers.database_url) as p:
        yield p


# --- the classifier (pure) -------------------------------------------------

SESSION_PINS = [
    "SET search_path TO public",
    "set statement_timeout = 5000",
    "SET SESSION statement_timeout = 5000",
    "SET TIME ZONE 'UTC'",
    "SET SESSION AUTHORIZATION DEFAULT",
    "SET ROLE other",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "RESET ALL",
    "reset statement_timeout",
    "SELECT set_config('search_path', 'public', false)",
    "SELECT set_config('search_path', 'public', $1)",
    "PREPARE q AS SELECT 1",
    "EXECUTE q",
    "DEALLOCATE ALL",
    "DISCARD ALL",
    "LISTEN channel",
    "LOAD 'auto_explain'",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CREATE TEMP TABLE t (a int)",
    "CREATE TEMPORARY SEQUENCE s",
    "create local temporary table t (a int)",
    "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
    "SELECT 1 AS a INTO TEMP TABLE t",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_catalog.pg_advisory_lock_shared(1, 2)",
    "SELECT pg_try_advisory_lock(42)",
    "SELECT PG_TRY_ADVISORY_LOCK_SHARED(42)",
    "SELECT pg_advisory_unlock(42)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT nextval('s')",
    "SELECT setval('s', 10)",
    "SELECT 1; SET search_path TO public",
    "/* a comment */ SET search_path TO public",
    "SELECT '" + "x" * (16 * 1024) + "'",
]

TRANSACTION_SCOPED = [
    "SET LOCAL statement_timeout = 0",
    "set local lock_timeout = 10000",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SELECT set_config('statement_timeout', '0', true)",
    "SELECT set_config('statement_timeout', '0', 't')",
]

NOT_PINNING = [
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_advisory_xact_lock_shared(1)",
    "SELECT pg_try_advisory_xact_lock(hashtextextended('workspace-registry/liveness-sweep', 0))",
    "SELECT pg_try_advisory_xact_lock_shared(1, 2)",
    "SELECT * FROM registry_heartbeat_v1('3f2504e0-4f89-41d3-9a0c-0305e82c3301', NULL, false)",
    "UPDATE workspaces SET status = 'offline' WHERE id = $1",
    "INSERT INTO t (a) SELECT 1 ON CONFLICT (a) DO UPDATE SET a = 2",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1",
    "ALTER ROLE registry IN DATABASE registry SET statement_timeout = '5s'",
    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I SET lock_timeout = %L', current_user, '3s'); END $$",
    "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS $body$ SELECT nextval('s') $body$",
    "CREATE TABLE settings (a int)",
    "CREATE SEQUENCE s",
    "SELECT 'SET search_path TO x; DISCARD ALL'",
    "SELECT E'it\\'s; SET x = 1'",
    'SELECT "set" FROM "listen"',
    "-- SET search_path TO x\nSELECT 1",
    "SELECT 1 /* ; DISCARD ALL /* nested */ still a comment */",
    "NOTIFY channel",
    "UNLISTEN *",
    "PREPARE TRANSACTION 'x'",
    "SELECT $1::text",
    "SELECT '" + "x" * (16 * 1024 - 20) + "'",
]


@pytest.mark.parametrize("sql", SESSION_PINS)
def test_session_state_changes_pin(sql):
    reasons = pinning_reasons(sql)
    assert reasons and not all(is_transaction_scoped(r) for r in reasons), reasons


@pytest.mark.parametrize("sql", TRANSACTION_SCOPED)
def test_transaction_scoped_settings_are_flagged_as_such(sql):
    """AWS's PostgreSQL list says "Using SET commands" pins; the SET LOCAL
    exemption on that page is in the MySQL list. Counted, but told apart."""
    reasons = pinning_reasons(sql)
    assert reasons and all(is_transaction_scoped(r) for r in reasons), reasons


@pytest.mark.parametrize("sql", NOT_PINNING)
def test_statements_that_do_not_pin(sql):
    assert pinning_reasons(sql) == []


def test_every_request_statement_is_free_of_pinning():
    """statements.py as psycopg2 sends it (parameters inline, small values)."""
    from registry import statements

    sent = 0
    for name in dir(statements):
        sql = getattr(statements, name)
        if name.isupper() and isinstance(sql, str):
            rendered = re.sub(r"%\((\w+)\)s", "'x'", sql)  # each placeholder a literal
            assert pinning_reasons(rendered) == [], name
            sent += 1
    assert sent >= 10


def test_every_migration_file_is_free_of_session_pinning():
    from registry import migrate

    for _, path in migrate.planned():  # the schema and the request functions
        assert pinning_reasons(path.read_text()) == [], path.name


def test_extended_protocol_parse_is_inspected():
    """Named prepared statements pin; an unnamed Parse is judged by its text.
    Messages arrive split across reads, as they do on a socket."""
    p = ProxyStandIn("postgresql://postgres@/postgres?host=/nonexistent")
    inspector = _Inspector(p, "app", "db")

    def parse(name: bytes, sql: bytes) -> bytes:
        body = name + b"\0" + sql + b"\0" + struct.pack("!H", 0)
        return b"P" + struct.pack("!I", len(body) + 4) + body

    stream = parse(b"stmt1", b"SELECT 1") + parse(b"", b"SELECT 2") + parse(b"", b"SET search_path TO x") + b"S\0\0\0\4"
    for i in range(0, len(stream), 7):
        inspector.feed(stream[i : i + 7])
    assert p.pinned == ["SELECT 1", "SET search_path TO x"]
    assert "named prepared statement 'stmt1'" in p.pins[0].reasons[0]
    assert p.statements["app"] == 3


# --- at the door -------------------------------------------------------------


def test_startup_options_are_refused_with_the_proxy_text(proxy):
    with pytest.raises(psycopg2.OperationalError) as err:
        psycopg2.connect(proxy.dsn(options="-c statement_timeout=5000"))
    assert OPTIONS_REFUSED in str(err.value)
    assert "RDS Proxy currently doesn\u2019t support command-line options" in str(err.value)
    assert proxy.refused == ["startup options '-c statement_timeout=5000'"]
    assert proxy.connections == {}


def test_a_client_without_tls_is_refused(proxy):
    with pytest.raises(psycopg2.OperationalError, match=TLS_REQUIRED):
        psycopg2.connect(proxy.dsn(sslmode="disable"))
    assert proxy.refused == ["client did not ask for TLS"]


def test_tls_connection_reaches_the_database_and_can_be_verified(proxy, servers):
    conn = psycopg2.connect(proxy.dsn(sslmode="verify-full", sslrootcert=proxy.cert_path, application_name="probe"))
    try:
        assert conn.info.ssl_in_use
        with conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_user")
            assert cur.fetchone() == ("postgres", "postgres")
    finally:
        conn.close()
    assert proxy.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert proxy.connections == {"probe": 1} and proxy.statements["probe"] >= 1
    assert proxy.pinned == [] and proxy.refused == []


def test_the_functions_own_connection_goes_through_the_proxy(registry, servers, pg):
    """DATABASE_URL is the stand-in: the handler's backend sees the proxy's client."""
    from registry import db

    ws, token = registry.registered()
    assert registry.heartbeat(ws, token).status == 200
    assert db.connection().info.ssl_in_use
    assert psycopg2.extensions.parse_dsn(db._dsn_provider())["port"] == str(servers.proxy.address[1])
    with pg.cursor() as cur:
        cur.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (db.connection().get_backend_pid(),))
        assert cur.fetchone() == ("workspace-registry",)


def test_pins_are_recorded_with_the_client_application(proxy):
    conn = psycopg2.connect(proxy.dsn(application_name="pinner"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute("SET search_path TO public")
            cur.execute("SELECT pg_advisory_lock(7), pg_advisory_unlock(7)")
            cur.execute("BEGIN; SET LOCAL lock_timeout = 100; SELECT pg_advisory_xact_lock(7); COMMIT")
    finally:
        conn.close()
    assert proxy.pinned == [
        "SET search_path TO public",
        "SELECT pg_advisory_lock(7), pg_advisory_unlock(7)",
        "BEGIN; SET LOCAL lock_timeout = 100; SELECT pg_advisory_xact_lock(7); COMMIT",
    ]
    assert [p.application_name for p in proxy.pins] == ["pinner"] * 3
    assert [p.transaction_scoped_only for p in proxy.pins] == [False, False, True]


def test_upstream_down_is_refused_at_once():
    with ProxyStandIn("postgresql://postgres@/postgres?host=/nonexistent-socket-dir") as proxy:
        started = time.monotonic()
        with pytest.raises(psycopg2.OperationalError, match=UPSTREAM_UNAVAILABLE):
            psycopg2.connect(proxy.dsn(connect_timeout=2))
        assert time.monotonic() - started < 1
        assert proxy.refused[0].startswith("upstream unavailable")


def test_server_ending_the_session_reaches_the_client(proxy, pg):
    conn = psycopg2.connect(proxy.dsn())
    try:
        with pg.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))
        with pytest.raises(psycopg2.OperationalError):
            conn.cursor().execute("SELECT 1")
    finally:
        conn.close()


def test_cancel_request_is_passed_on(proxy):
    """From a child process: psycopg2's cancel() keeps the GIL while libpq
    talks to the proxy, so it cannot reach a stand-in in the same process."""
    script = (
        "import sys, threading, psycopg2\n"
        "conn = psycopg2.connect(sys.argv[1])\n"
        "threading.Timer(0.3, conn.cancel).start()\n"
        "try:\n"
        "    conn.cursor().execute('SELECT pg_sleep(10)')\n"
        "except psycopg2.extensions.QueryCanceledError:\n"
        "    print('cancelled')\n"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script, proxy.dsn()], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "cancelled", out.stderr
    assert time.monotonic() - started < 8


def test_many_concurrent_sessions(proxy):
    errors, results = [], []

    def client(i):
        try:
            conn = psycopg2.connect(proxy.dsn(application_name="many"))
            with conn.cursor() as cur:
                cur.execute("SELECT %s::int + 1, pg_sleep(0.05)", (i,))
                results.append(cur.fetchone()[0])
            conn.close()
        except Exception as err:  # collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results) == list(range(1, 25))
    assert proxy.connections == {"many": 24}


# --- the registry through it ------------------------------------------------


def test_a_migration_run_through_the_proxy(proxy, servers):
    from registry import migrate

    name = f"proxy_migrate_{new_id()[:8]}"
    harness.create_database(servers.database_url, name)
    try:
        applied = migrate.apply(proxy.dsn(dbname=name))
        assert applied == [name for name, _ in migrate.planned()]
        assert migrate.apply(proxy.dsn(dbname=name)) == []
    finally:
        harness.drop_database(servers.database_url, name)
    assert proxy.refused == []
    # and once (the first run) the connection of the file that runs outside
    # a transaction (0011: CREATE INDEX CONCURRENTLY)
    assert proxy.connections == {"workspace-registry-migrate": 2, migrate.OUTSIDE_TRANSACTION_APPLICATION: 1}
    # On the runner's connection only its SET LOCAL time-outs, once per
    # transactional file per run: nothing that outlives its transaction (the
    # advisory lock is the _xact_ one).
    main = proxy.pins_of("workspace-registry-migrate")
    files = len([p for _, p in migrate.planned() if not migrate.is_non_transactional(p.read_text())])
    assert len(main) == 2 * files * 2
    assert all(p.transaction_scoped_only for p in main), main
    assert {p.statement.split(" =")[0] for p in main} == {"SET LOCAL statement_timeout", "SET LOCAL lock_timeout"}
    # The file outside a transaction pins its own connection, knowingly: its
    # session time-outs and lock, released and reset before it closes.
    outside = {p.statement.split(" =")[0].split("(")[0] for p in proxy.pins_of(migrate.OUTSIDE_TRANSACTION_APPLICATION)}
    assert outside == {"SET statement_timeout", "SET lock_timeout", "SELECT pg_advisory_lock", "SELECT pg_advisory_unlock", "RESET ALL"}, outside


def test_sweep_and_handlers_through_the_proxy_pin_nothing(registry, proxy, monkeypatch, pg):
    """Every request type and the sweep (lock, expiry, relay) on a stand-in
    of its own: statements seen, none of them pinning."""
    from registry import db

    monkeypatch.setattr(db, "_dsn_provider", lambda: proxy.dsn())
    db.close()
    ws, token = registry.registered()
    assert registry.heartbeat(ws, token, error_rate=0.9).status == 200
    assert registry.update_card(ws, {"name": "agent", "v": 2}, token).status == 200
    silent, _ = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s", (silent,))
    assert registry.sweep()["expired"] == 1
    assert registry.deregister(ws, token).status == 200
    db.close()
    assert proxy.statements["workspace-registry"] >= 8
    assert proxy.pins == []


def test_an_agent_card_over_16_kb_pins_the_session_which_the_registry_then_ends(registry, proxy, monkeypatch):
    """psycopg2 sends parameters inline, so a register or update-card with a
    card over ~16 KB is a statement over 16 KB, which RDS Proxy pins ("Any
    statement with a text size greater than 16 KB causes the proxy to pin
    the session") until the session ends: registry.db ends it right away,
    so the container does not keep a database connection to itself."""
    from registry import db

    monkeypatch.setattr(db, "_dsn_provider", lambda: proxy.dsn())
    db.close()
    ws, token = registry.registered(card={"name": "small"})
    assert proxy.pins == []
    sessions = proxy.connections["workspace-registry"]
    assert registry.update_card(ws, {"blob": "y" * 17_000}, token).status == 200
    [pin] = proxy.pins
    assert pin.application_name == "workspace-registry"
    assert "registry_update_card_v2(" in pin.statement
    assert pin.reasons == ("statement text over 16384 bytes (AWS: 'greater than 16 KB')",)
    # closed by the registry itself: the marking that followed the statement
    # already went out on a fresh, unpinned session
    assert proxy.connections["workspace-registry"] == sessions + 1
    assert registry.heartbeat(ws, token, current_task="next").status == 200
    assert proxy.connections["workspace-registry"] == sessions + 1 and len(proxy.pins) == 1
    # below the limit nothing is closed
    assert registry.update_card(ws, {"blob": "y" * 15_000}, token).status == 200
    assert proxy.connections["workspace-registry"] == sessions + 1 and len(proxy.pins) == 1


def test_a_database_whose_datestyle_is_not_iso_pins_every_psycopg2_session(proxy, servers):
    """psycopg2 sends SET datestyle TO 'ISO' on connect when the server's
    DateStyle does not start with ISO: through RDS Proxy that pins every
    session. Postgres' and RDS's default is 'ISO, MDY'; an existing platform
    database must keep it (docs/deploy.md, "RDS Proxy: what the registry relies on")."""
    name = f"proxy_datestyle_{new_id()[:8]}"
    database_url = harness.create_database(servers.database_url, name)
    admin = psycopg2.connect(servers.database_url)
    admin.autocommit = True
    try:
        psycopg2.connect(proxy.dsn(dbname=name)).close()
        assert proxy.pins == []
        with admin.cursor() as cur:
            cur.execute(f"ALTER DATABASE \"{name}\" SET DateStyle = 'SQL, DMY'")
        psycopg2.connect(proxy.dsn(dbname=name)).close()
        assert proxy.pinned == ["SET datestyle TO 'ISO'"]
        # The registry's migration 0007 gives its role ISO in its database
        # (a role-in-database default wins over the database's): no pin.
        from registry import migrate

        migrate.apply(database_url)
        psycopg2.connect(proxy.dsn(dbname=name)).close()
        assert proxy.pinned == ["SET datestyle TO 'ISO'"]
    finally:
        admin.close()
        harness.drop_database(servers.database_url, name)
