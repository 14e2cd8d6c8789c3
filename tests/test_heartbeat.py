"""Heartbeat: 404/410/401, stored columns, liveness and runtime overrides
in Redis, TASK_UPDATED, queue drain, optional WORKSPACE_HEARTBEAT."""

import json
import time

import pytest

from conftest import new_id, wait_for_lock_wait
from registry.liveness import runtime_key


def status_of(pg, ws):
    with pg.cursor() as cur:
        cur.execute("SELECT status::text FROM workspaces WHERE id = %s", (ws,))
        return cur.fetchone()[0]


def test_never_registered_is_404_so_the_agent_registers_again(registry, pg, rds):
    a = registry.heartbeat(new_id())
    assert a.status == 404 and "register" in a.body["error"]
    assert rds.keys("*") == []


def test_token_required_once_the_workspace_has_one(registry):
    ws, token = registry.registered()
    assert registry.heartbeat(ws).status == 401
    _, other = registry.registered()
    a = registry.heartbeat(ws, other)  # workspace A's token on workspace B
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"
    assert registry.heartbeat(ws, token).status == 200


def test_refused_heartbeat_writes_nothing(registry, pg, rds):
    ws, _ = registry.registered()
    with pg.cursor() as cur:
        cur.execute("SELECT last_heartbeat_at, updated_at FROM workspaces WHERE id = %s", (ws,))
        before = cur.fetchone()
    rds.flushall()
    assert registry.heartbeat(ws, error_rate=0.9, current_task="evil").status == 401
    with pg.cursor() as cur:
        cur.execute("SELECT last_heartbeat_at, updated_at, current_task, status::text FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == (*before, None, "online")
    assert rds.keys("*") == []


def test_removed_workspace_with_live_token_still_answers_410_to_its_owner(registry, pg, rds):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    rds.flushall()
    assert registry.heartbeat(ws, token).status == 410
    assert registry.update_card(ws, {"x": 1}, token).status == 410
    assert registry.register(ws, token=token).status == 410
    assert rds.keys("*") == []
    assert status_of(pg, ws) == "removed"


def test_stores_every_column(registry, pg):
    ws, token = registry.registered()
    a = registry.heartbeat(ws, token, error_rate=0.25, sample_error="timeout", active_tasks=2, uptime_seconds=321, current_task="write report")
    assert a.status == 200
    with pg.cursor() as cur:
        cur.execute(
            "SELECT last_error_rate, last_sample_error, active_tasks, uptime_seconds, current_task, last_heartbeat_at > now() - interval '5 seconds' FROM workspaces WHERE id = %s",
            (ws,),
        )
        assert cur.fetchone() == (0.25, "timeout", 2, 321, "write report", True)


def test_long_diagnostic_text_is_cut_not_refused(registry, pg):
    ws, token = registry.registered()
    assert registry.heartbeat(ws, token, sample_error="e" * 10_000, current_task="t" * 10_000).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT length(last_sample_error), length(current_task) FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == (4096, 4096)


def test_liveness_key_refreshed_and_recreated_after_a_flush(registry, rds):
    ws, token = registry.registered()
    rds.expire(f"ws:{ws}", 5)
    assert registry.heartbeat(ws, token).status == 200
    assert rds.ttl(f"ws:{ws}") > 170
    rds.flushall()  # an ElastiCache failover that lost the data
    assert registry.heartbeat(ws, token).status == 200
    assert rds.get(f"ws:{ws}") == "online"


def test_last_heartbeat_time_readable_in_redis(registry, rds):
    ws, token = registry.registered()
    before = time.time()
    registry.heartbeat(ws, token)
    assert before - 1 <= float(rds.hget(runtime_key(ws), "last_heartbeat_at")) <= time.time() + 1


def test_runtime_metadata_overrides_in_redis(registry, rds):
    ws, token = registry.registered()
    key = runtime_key(ws)
    caps = {"heartbeat": False, "scheduler": True}
    registry.heartbeat(ws, token, runtime_metadata={"capabilities": caps, "idle_timeout_seconds": 600})
    assert rds.hget(key, "idle_timeout_seconds") == "600"
    assert json.loads(rds.hget(key, "capabilities")) == caps
    assert 0 < rds.ttl(key) <= 180
    # non-positive clears the override; capabilities given again stay
    registry.heartbeat(ws, token, runtime_metadata={"capabilities": caps, "idle_timeout_seconds": 0})
    assert rds.hget(key, "idle_timeout_seconds") is None
    assert rds.hget(key, "capabilities") is not None
    # idle absent clears; a metadata block without capabilities keeps the last ones
    registry.heartbeat(ws, token, runtime_metadata={"idle_timeout_seconds": 300})
    assert rds.hget(key, "idle_timeout_seconds") == "300"
    registry.heartbeat(ws, token, runtime_metadata={})
    assert rds.hget(key, "idle_timeout_seconds") is None
    # no runtime_metadata at all: an old runtime; everything it declared is cleared
    registry.heartbeat(ws, token)
    assert rds.hget(key, "capabilities") is None and rds.hget(key, "idle_timeout_seconds") is None
    # explicit zero capabilities is a declaration, not an absence
    registry.heartbeat(ws, token, runtime_metadata={"capabilities": {}})
    assert rds.hget(key, "capabilities") == "{}"


def test_task_updated_only_when_the_task_changes(registry, aws):
    ws, token = registry.registered()
    aws.received()
    registry.heartbeat(ws, token, current_task="a", active_tasks=1)
    registry.heartbeat(ws, token, current_task="a", active_tasks=1)
    registry.heartbeat(ws, token, current_task="b", active_tasks=2)
    registry.heartbeat(ws, token, current_task="b", active_tasks=1)
    registry.heartbeat(ws, token, current_task="", active_tasks=0)
    tasks = [e["detail"]["payload"] for e in aws.received() if e["detail-type"] == "TASK_UPDATED"]
    assert tasks == [{"current_task": "a", "active_tasks": 1}, {"current_task": "b", "active_tasks": 2}, {"current_task": "", "active_tasks": 0}]


def test_steady_heartbeat_publishes_nothing(registry, aws):
    ws, token = registry.registered()
    registry.heartbeat(ws, token, current_task="same")
    aws.received()
    for _ in range(3):
        registry.heartbeat(ws, token, current_task="same", uptime_seconds=10)
    assert aws.received() == []


def test_heartbeat_events_published_only_when_enabled(registry, aws, monkeypatch):
    from registry import settings

    ws, token = registry.registered()
    aws.received()
    registry.heartbeat(ws, token)
    assert aws.types() == []
    monkeypatch.setenv("PUBLISH_HEARTBEAT_EVENTS", "true")
    settings.get_settings.cache_clear()
    try:
        registry.heartbeat(ws, token, active_tasks=1, uptime_seconds=99)
        [event] = [e for e in aws.received() if e["detail-type"] == "WORKSPACE_HEARTBEAT"]
        assert event["detail"]["payload"] == {"active_tasks": 1, "uptime_seconds": 99}
    finally:
        monkeypatch.delenv("PUBLISH_HEARTBEAT_EVENTS")
        settings.get_settings.cache_clear()


def queue(pg, ws, status="queued"):
    with pg.cursor() as cur:
        cur.execute("INSERT INTO a2a_queue (workspace_id, body, status) VALUES (%s, '{}', %s)", (ws, status))


def test_queue_drain_requested_when_capacity_and_queued_work(registry, pg, aws):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET max_concurrent_tasks = 2 WHERE id = %s", (ws,))
    aws.received()
    registry.heartbeat(ws, token, active_tasks=1)
    assert "QUEUE_DRAIN_REQUESTED" not in aws.types()  # nothing queued
    queue(pg, ws, "dispatched")
    registry.heartbeat(ws, token, active_tasks=1)
    assert "QUEUE_DRAIN_REQUESTED" not in aws.types()  # nothing *queued*
    queue(pg, ws)
    registry.heartbeat(ws, token, active_tasks=2)
    assert "QUEUE_DRAIN_REQUESTED" not in aws.types()  # no spare capacity
    registry.heartbeat(ws, token, active_tasks=1)
    [drain] = [e for e in aws.received() if e["detail-type"] == "QUEUE_DRAIN_REQUESTED"]
    assert drain["detail"]["workspace_id"] == ws and drain["detail"]["payload"] == {"active_tasks": 1}


@pytest.mark.parametrize("status", ["paused", "hibernated", "failed"])
def test_platform_owned_statuses_left_alone(registry, pg, aws, status):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = %s WHERE id = %s", (status, ws))
    aws.received()
    assert registry.heartbeat(ws, token, error_rate=0.9, runtime_state="wedged").status == 200
    assert status_of(pg, ws) == status
    assert [t for t in aws.types() if t.startswith("WORKSPACE_")] == []


def test_each_transition_publishes_its_event_with_ids(registry, pg, aws):
    ws, token = registry.registered()
    aws.received()
    registry.heartbeat(ws, token, error_rate=0.9, sample_error="boom")
    registry.heartbeat(ws, token, error_rate=0.0)
    got = [(e["detail-type"], e["detail"]["payload"]) for e in aws.received()]
    assert got == [("WORKSPACE_DEGRADED", {"error_rate": 0.9, "sample_error": "boom"}), ("WORKSPACE_ONLINE", {})]
    with pg.cursor() as cur:
        cur.execute("SELECT count(DISTINCT id) FROM structure_events WHERE workspace_id = %s", (ws,))
        assert cur.fetchone() == (3,)


def test_heartbeat_racing_a_removal_leaves_it_removed(registry, pg, servers):
    """The #73 guard under a real race: a removal committed while the
    heartbeat waits on the row lock is seen, not overwritten."""
    import threading

    import psycopg2

    ws, token = registry.registered()
    remover = psycopg2.connect(servers.database_url)
    cur = remover.cursor()
    cur.execute("SELECT 1 FROM workspaces WHERE id = %s FOR UPDATE", (ws,))
    result = {}

    def beat():
        result["answer"] = registry.heartbeat(ws, token)
        from registry import db

        db.close()

    t = threading.Thread(target=beat)
    t.start()
    wait_for_lock_wait(pg)  # the heartbeat is now waiting for the row
    cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    remover.commit()
    t.join(10)
    remover.close()
    assert result["answer"].status == 410
    assert status_of(pg, ws) == "removed"


def test_only_steady_heartbeats_commit_asynchronously(registry, pg, servers):
    """The function turns synchronous_commit off for its own transaction
    when it wrote no event; transitions and refusals keep it on."""
    import psycopg2

    from registry import statements, status

    import psycopg2.extras

    ws, token = registry.registered()
    conn = psycopg2.connect(servers.database_url)

    def mode_after(rules, token_hash):
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(
                statements.HEARTBEAT,
                {
                    "id": ws, "token_hash": token_hash, "require_token": False, "rules": json.dumps(rules),
                    "error_rate": 0.0, "sample_error": "", "active_tasks": 0, "uptime_seconds": 1,
                    "current_task": "", "monthly_spend": None,
                },
            )
            row = cur.fetchone()
            cur.execute("SHOW synchronous_commit")
            mode = cur.fetchone()["synchronous_commit"]
        conn.rollback()
        return row, mode

    from registry.tokens import hash_token

    steady = status.transition_table(status.Signal())
    degrade = status.transition_table(status.Signal(error_rate=0.9))
    row, mode = mode_after(steady, hash_token(token))
    assert (row["outcome"], row["new_status"], row["event_id"], mode) == ("ok", "online", None, "off")
    row, mode = mode_after(degrade, hash_token(token))
    assert (row["outcome"], row["new_status"], mode) == ("ok", "degraded", "on") and row["event_id"] is not None
    row, mode = mode_after(steady, None)  # refused: nothing written
    assert (row["outcome"], row["new_status"], mode) == ("unauthorized", None, "on")
    conn.close()
