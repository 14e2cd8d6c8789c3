"""Dependencies that fail: Postgres (503, fast, nothing half-written, auth
fails closed), Redis (call succeeds, counted), EventBridge (call succeeds,
event stays recorded as pending)."""

import socket
import threading
import time

import pytest

from conftest import new_id, wait_for_backend_gone, wait_for_lock_wait


@pytest.fixture(params=["direct", "through the RDS Proxy stand-in"])
def dead_postgres(request, monkeypatch):
    """Point the functions at a dead server, directly or, as in AWS, through
    the proxy (which then answers the client itself, or relays the silence)."""
    from devstack.rdsproxy import ProxyStandIn
    from registry import db

    proxies = []

    def use(dsn):
        if request.param != "direct":
            proxies.append(ProxyStandIn(dsn).start())
            dsn = proxies[-1].dsn()
        monkeypatch.setattr(db, "_dsn_provider", lambda: dsn)
        db.close()

    yield use
    db.close()
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    accepted = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    for c in accepted:
        c.close()
    sock.close()


def test_postgres_refusing_connections_is_an_immediate_503(registry, dead_postgres):
    dead_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    started = time.monotonic()
    a = registry.register(new_id())
    assert a.status == 503 and a.headers["retry-after"] == "5"
    assert a.body == {"error": "database unavailable, retry later"}
    assert time.monotonic() - started < 2


def test_hung_postgres_answers_503_within_the_connect_timeout(registry, dead_postgres, silent_server):
    dead_postgres(f"postgresql://postgres@127.0.0.1:{silent_server}/postgres")
    started = time.monotonic()
    a = registry.heartbeat(new_id())
    assert a.status == 503
    assert time.monotonic() - started < 5  # PG_CONNECT_TIMEOUT_SECONDS=2, not the function's time-out


def test_auth_fails_closed_when_the_token_check_cannot_run(registry, dead_postgres, pg):
    """The seed let requests through when the token lookup failed."""
    ws, _ = registry.registered()
    dead_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    for a in (registry.heartbeat(ws), registry.update_card(ws, {"evil": 1}), registry.register(ws, card={"evil": 1})):
        assert a.status == 503
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ({"name": "agent"},)


def test_connection_the_server_closed_is_replaced_before_use(registry, pg):
    """RDS Proxy idle time-out, failover: the container's idle connection was
    ended by the server; the next request opens a fresh one, no 503."""
    from registry import db

    ws, token = registry.registered()
    conn = db.connection()
    with pg.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))
    wait_for_backend_gone(pg, conn.get_backend_pid())
    assert registry.heartbeat(ws, token).status == 200
    assert db.connection() is not conn


def test_connection_lost_mid_statement_is_a_503_then_replaced(registry, pg, servers):
    """A session killed while its statement runs: 503 now, a fresh connection next."""
    import psycopg2

    from registry import db

    ws, token = registry.registered()
    conn = db.connection()
    blocker = psycopg2.connect(servers.database_url)
    blocker.cursor().execute("SELECT 1 FROM workspaces WHERE id = %s FOR UPDATE", (ws,))
    def kill_once_waiting():
        wait_for_lock_wait(pg)
        pg.cursor().execute("SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))

    killer = threading.Thread(target=kill_once_waiting)
    killer.start()
    try:
        assert registry.heartbeat(ws, token).status == 503  # waiting on the lock when killed
    finally:
        killer.join()
        blocker.rollback()
        blocker.close()
    assert registry.heartbeat(ws, token).status == 200


def test_lock_timeout_is_a_503_not_a_hang(registry, pg, servers):
    """A row locked by someone else longer than the role's lock time-out
    (migration 0007: no startup options, no SET, so RDS Proxy accepts and
    never pins the connection). Shortened here to keep the test quick."""
    import psycopg2

    from registry import db

    def set_role_lock_timeout(value):
        with pg.cursor() as cur:
            cur.execute("SELECT format('ALTER ROLE %%I IN DATABASE %%I SET lock_timeout = %%L', current_user, current_database(), %s)", (value,))
            cur.execute(cur.fetchone()[0])
        db.close()  # a role default reaches new sessions only

    with pg.cursor() as cur:
        cur.execute(
            "SELECT cfg FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) cfg "
            "WHERE r.rolname = current_user AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND cfg LIKE 'lock_timeout=%'"
        )
        assert cur.fetchone() == ("lock_timeout=3s",)
    set_role_lock_timeout("300ms")
    ws, token = registry.registered()
    blocker = psycopg2.connect(servers.database_url)
    try:
        blocker.cursor().execute("SELECT 1 FROM workspaces WHERE id = %s FOR UPDATE", (ws,))
        started = time.monotonic()
        assert registry.heartbeat(ws, token).status == 503
        assert time.monotonic() - started < 2
    finally:
        blocker.rollback()
        blocker.close()
        set_role_lock_timeout("3s")
    assert registry.heartbeat(ws, token).status == 200


@pytest.fixture
def dead_redis(monkeypatch, tmp_path):
    from registry import liveness, settings

    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path}/no-redis.sock")
    settings.get_settings.cache_clear()
    liveness.reset()
    yield
    monkeypatch.undo()
    settings.get_settings.cache_clear()
    liveness.reset()


def test_redis_down_calls_still_succeed_and_are_counted(registry, dead_redis, pg, capsys):
    ws = new_id()
    a = registry.register(ws)
    assert a.status == 200 and "auth_token" in a.body
    assert registry.heartbeat(ws, a.body["auth_token"]).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT status::text FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("online",)
    out = capsys.readouterr().out
    assert '"RedisFailures"' in out  # the EMF metric line


def test_redis_back_liveness_returns_on_next_heartbeat(registry, rds, monkeypatch, tmp_path):
    from registry import liveness, settings

    ws, token = registry.registered()
    good = settings.get_settings().redis_url
    monkeypatch.setenv("REDIS_URL", f"unix://{tmp_path}/gone.sock")
    settings.get_settings.cache_clear()
    liveness.reset()
    rds.flushall()
    assert registry.heartbeat(ws, token).status == 200
    assert rds.get(f"ws:{ws}") is None
    monkeypatch.setenv("REDIS_URL", good)
    settings.get_settings.cache_clear()
    liveness.reset()
    assert registry.heartbeat(ws, token).status == 200
    assert rds.get(f"ws:{ws}") == "online"


@pytest.fixture
def eventbridge_down(monkeypatch):
    """Publishing to a bus that does not exist: PutEvents fails for real."""
    from registry import events, settings

    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    settings.get_settings.cache_clear()
    events.reset_client()
    yield
    monkeypatch.undo()
    settings.get_settings.cache_clear()


def test_eventbridge_down_calls_succeed_and_events_stay_pending(registry, eventbridge_down, pg, aws, capsys):
    ws = new_id()
    a = registry.register(ws)
    assert a.status == 200
    token = a.body["auth_token"]
    assert registry.heartbeat(ws, token, error_rate=0.9).status == 200
    assert registry.update_card(ws, {"v": 2}, token).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT event_type, publish_pending FROM structure_events WHERE workspace_id = %s ORDER BY created_at", (ws,))
        assert cur.fetchall() == [("WORKSPACE_ONLINE", True), ("WORKSPACE_DEGRADED", True), ("AGENT_CARD_UPDATED", True)]
    assert aws.received() == []
    assert '"EventPublishFailures"' in capsys.readouterr().out


