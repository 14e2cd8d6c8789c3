"""Fault injection with real servers: a private Postgres and a private
Redis that the tests stop and start while the registry is in use."""

import threading
import time
from pathlib import Path

import psycopg2
import pytest
import redis as redis_lib

from conftest import new_id

from devstack import harness


class PrivatePostgres:
    """A Postgres of the test's own, migrated, that it stops and starts."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.uri, self.stop = harness.start_postgres(data_dir)
        from registry import migrate

        migrate.apply(self.uri)

    def start(self):
        uri, self.stop = harness.start_postgres(self.dir)
        assert uri == self.uri


@pytest.fixture
def private_pg(registry, tmp_path, monkeypatch):
    """The functions reach it through an RDS Proxy stand-in, as in AWS: the
    proxy stays up while the database stops and starts behind it."""
    from devstack.rdsproxy import ProxyStandIn
    from registry import db

    pg = PrivatePostgres(tmp_path / "pg")
    proxy = ProxyStandIn(pg.uri).start()
    pg.proxy = proxy
    monkeypatch.setattr(db, "_dsn_provider", lambda: proxy.dsn())
    db.close()
    yield pg
    db.close()
    proxy.stop()
    try:
        pg.stop()
    except Exception:
        pass


@pytest.fixture
def private_redis(registry, tmp_path, use_redis):
    return use_redis(harness.RedisServer(tmp_path), REDIS_COOLDOWN_SECONDS=0)


def count_rows(uri, sql, *args):
    conn = psycopg2.connect(uri)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_postgres_stopped_mid_run_fast_503s_then_full_recovery(registry, private_pg, rds, aws):
    ws, token = registry.registered()
    answers = []
    stop = threading.Event()

    def agent():
        while not stop.is_set():
            started = time.monotonic()
            a = registry.heartbeat(ws, token, current_task=f"t{len(answers)}", uptime_seconds=len(answers))
            answers.append((a.status, time.monotonic() - started, a.headers.get("retry-after")))
        from registry import db

        db.close()

    t = threading.Thread(target=agent)
    t.start()
    time.sleep(0.3)
    private_pg.stop()
    # while it is down: new registrations are refused whole
    down_ids = [new_id() for _ in range(5)]
    aws.received()
    for fresh in down_ids:
        assert registry.register(fresh).status == 503
    time.sleep(0.5)
    private_pg.start()
    time.sleep(0.5)
    stop.set()
    t.join(30)

    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and statuses[-1] == 200
    for status, elapsed, retry_after in answers:
        if status == 503:
            assert elapsed < 2.5 and retry_after == "5"
    # nothing half-written by the refused registrations
    assert count_rows(private_pg.uri, "SELECT count(*) FROM workspaces WHERE id = ANY(%s::uuid[])", down_ids) == 0
    assert count_rows(private_pg.uri, "SELECT count(*) FROM structure_events WHERE workspace_id = ANY(%s::uuid[])", down_ids) == 0
    assert all(rds.keys(f"*{fresh}*") == [] for fresh in down_ids)
    assert [e for e in aws.received() if e["detail"]["workspace_id"] in down_ids] == []
    # the row is coherent: the last successful heartbeat's values, whole
    conn = psycopg2.connect(private_pg.uri)
    with conn.cursor() as cur:
        cur.execute("SELECT current_task, uptime_seconds FROM workspaces WHERE id = %s", (ws,))
        task, uptime = cur.fetchone()
    conn.close()
    assert task == f"t{uptime}"
    # the requests went through the proxy, which refused them while the database was down
    assert private_pg.proxy.connections["workspace-registry"] >= 2
    assert any(r.startswith("upstream unavailable") for r in private_pg.proxy.refused)
    assert private_pg.proxy.pins == []


def test_redis_stopped_then_back(registry, private_redis):
    ws, token = registry.registered()
    r = private_redis.client()
    assert r.get(f"ws:{ws}") == "online"
    private_redis.stop()
    started = time.monotonic()
    assert registry.heartbeat(ws, token).status == 200
    fresh = registry.register()
    assert fresh.status == 200 and "auth_token" in fresh.body
    assert time.monotonic() - started < 3
    private_redis.start()  # empty: it lost everything
    r = private_redis.client()
    assert r.get(f"ws:{ws}") is None
    assert registry.heartbeat(ws, token).status == 200
    assert r.get(f"ws:{ws}") == "online"


def test_eventbridge_failing_then_back_nothing_lost(registry, aws, monkeypatch):
    """PutEvents raising connection errors (not just refusing) for a while."""
    from botocore.exceptions import EndpointConnectionError

    from registry import events, settings

    client = events._events_client()

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.events.PutEvents", unreachable)
    try:
        made = [registry.registered() for _ in range(3)]
        for ws, token in made:
            assert registry.heartbeat(ws, token, error_rate=0.9).status == 200
            assert registry.update_card(ws, {"v": 2}, token).status == 200
    finally:
        client.meta.events.unregister("before-send.events.PutEvents", unreachable)
    assert aws.received() == []
    monkeypatch.setenv("EVENT_RELAY_GRACE_SECONDS", "0")
    settings.get_settings.cache_clear()
    try:
        registry.sweep()
    finally:
        monkeypatch.undo()
        settings.get_settings.cache_clear()
    got = aws.received()
    for ws, _ in made:
        mine = [e["detail-type"] for e in got if e["detail"]["workspace_id"] == ws]
        assert mine == ["WORKSPACE_ONLINE", "WORKSPACE_DEGRADED", "AGENT_CARD_UPDATED"]


def test_concurrent_heartbeats_and_card_updates_leave_a_coherent_row(registry, pg):
    """Writers race on one row; each wins whole or not at all."""
    ws, token = registry.registered()
    errors = []

    def beat(i):
        for j in range(10):
            n = i * 100 + j
            a = registry.heartbeat(ws, token, error_rate=0.0, sample_error=f"s{n}", active_tasks=n, uptime_seconds=n, current_task=f"t{n}")
            if a.status != 200:
                errors.append(a.raw)
        from registry import db

        db.close()

    def card(i):
        for j in range(10):
            n = i * 100 + j
            a = registry.update_card(ws, {"writer": n, "copy": n}, token)
            if a.status != 200:
                errors.append(a.raw)
        from registry import db

        db.close()

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(4)] + [threading.Thread(target=card, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with pg.cursor() as cur:
        cur.execute("SELECT last_sample_error, active_tasks, uptime_seconds, current_task, agent_card, status::text FROM workspaces WHERE id = %s", (ws,))
        sample, active, uptime, task, card_, status = cur.fetchone()
    assert sample == f"s{active}" and uptime == active and task == f"t{active}"
    assert card_["writer"] == card_["copy"]
    assert status == "online"


def test_keys_cleared_on_a_cluster_mode_redis(registry, tmp_path, use_redis, pg):
    """ElastiCache Serverless is a cluster: a multi-key command across hash
    slots fails with CROSSSLOT. A one-node cluster holding every slot
    enforces the same rule, so deregister and the sweep are run against it."""
    admin = use_redis(harness.RedisServer.cluster(tmp_path)).client()
    with pytest.raises(redis_lib.ResponseError, match="same slot"):  # CROSSSLOT
        admin.delete("ws:a", "ws:b:url")  # the rule this test depends on

    (ws, token), (silent, _) = registry.registered(), registry.registered()
    registry.heartbeat(ws, token, runtime_metadata={"idle_timeout_seconds": 60})
    assert admin.get(f"ws:{ws}") == "online"
    assert registry.deregister(ws, token).status == 200
    assert [k for k in admin.keys("*") if ws in k] == []
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s", (silent,))
    assert registry.sweep()["expired"] == 1
    assert [k for k in admin.keys("*") if silent in k] == []
