"""The liveness sweep, self-preservation, the event relay and deregister,
on real Postgres, Redis and moto."""

import threading

import psycopg2
import pytest

from conftest import new_id




def age(pg, ws_ids, seconds):
    """Pretend these workspaces last heartbeated ``seconds`` ago."""
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() - %s * interval '1 second' WHERE id = ANY(%s::uuid[])", (seconds, list(ws_ids)))


def status_of(pg, ws):
    with pg.cursor() as cur:
        cur.execute("SELECT status::text FROM workspaces WHERE id = %s", (ws,))
        return cur.fetchone()[0]


def fleet(registry, n):
    return [registry.registered() for _ in range(n)]


def offline_events(aws):
    return [e for e in aws.received() if e["detail-type"] == "WORKSPACE_OFFLINE"]


def test_silent_workspace_goes_offline_with_event_and_keys_removed(registry, pg, rds, aws):
    (ws, token), (fresh, _) = fleet(registry, 2)
    age(pg, [ws], 181)
    aws.received()
    result = registry.sweep()
    assert result["expired"] == 1
    assert status_of(pg, ws) == "offline" and status_of(pg, fresh) == "online"
    assert rds.keys(f"*{ws}*") == [] and rds.get(f"ws:{fresh}") == "online"
    [event] = offline_events(aws)
    assert event["detail"]["workspace_id"] == ws
    assert event["detail"]["payload"]["reason"] == "liveness_expired"
    assert event["detail"]["payload"]["previous_status"] == "online"
    # and it comes back on its next heartbeat
    assert registry.heartbeat(ws, token).status == 200
    assert status_of(pg, ws) == "online"


def test_fresh_workspace_untouched(registry, pg, aws):
    ws, _ = registry.registered()
    age(pg, [ws], 179)
    aws.received()
    assert registry.sweep()["expired"] == 0
    assert status_of(pg, ws) == "online" and offline_events(aws) == []


def test_degraded_expires_too(registry, pg):
    ws, token = registry.registered()
    registry.heartbeat(ws, token, error_rate=0.9)
    age(pg, [ws], 600)
    registry.sweep()
    assert status_of(pg, ws) == "offline"


@pytest.mark.parametrize("status", ["removed", "paused", "hibernated", "provisioning", "failed", "offline"])
def test_other_statuses_untouched(registry, pg, aws, status):
    ws, _ = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = %s, last_heartbeat_at = now() - interval '1 day' WHERE id = %s", (status, ws))
    aws.received()
    registry.sweep()
    assert status_of(pg, ws) == status and offline_events(aws) == []


def test_online_row_that_never_heartbeated_expires(registry, pg):
    ws = new_id()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status) VALUES (%s, 'x', 'online')", (ws,))
    registry.sweep()
    assert status_of(pg, ws) == "offline"


def test_self_preservation_enters_once_and_leaves_once(registry, pg, aws, rds):
    workspaces = fleet(registry, 30)
    silent = [ws for ws, _ in workspaces[:8]]  # 27 % of 30, and >= 5
    age(pg, silent, 400)
    aws.received()
    r = registry.sweep()
    assert r["expired"] == 0 and r["self_preservation"] == "active"
    assert all(status_of(pg, ws) == "online" for ws in silent)
    [entered] = [e for e in aws.received() if e["detail-type"] == "REGISTRY_SELF_PRESERVATION"]
    assert entered["detail"]["payload"] == {"state": "entered", "silent": 8, "fleet": 30, "threshold_percent": 15.0}
    assert entered["detail"]["workspace_id"] is None
    # still silent: no second announcement, still nothing expired
    assert registry.sweep()["self_preservation"] == "active"
    assert [e for e in aws.received() if e["detail-type"] == "REGISTRY_SELF_PRESERVATION"] == []
    # the network heals: most come back, two stay silent
    for ws, token in workspaces[:6]:
        assert registry.heartbeat(ws, token).status == 200
    aws.received()
    r = registry.sweep()
    assert r["self_preservation"] == "normal" and r["expired"] == 2
    got = aws.received()
    [left] = [e for e in got if e["detail-type"] == "REGISTRY_SELF_PRESERVATION"]
    assert left["detail"]["payload"]["state"] == "left"
    assert sorted(e["detail"]["workspace_id"] for e in got if e["detail-type"] == "WORKSPACE_OFFLINE") == sorted(silent[6:])


def test_self_preservation_gives_up_after_max_seconds(registry, pg, aws, env):
    env(SELF_PRESERVATION_MAX_SECONDS=0)
    workspaces = fleet(registry, 10)
    silent = [ws for ws, _ in workspaces[:6]]
    age(pg, silent, 400)
    assert registry.sweep()["self_preservation"] == "active"
    r = registry.sweep()
    assert r["self_preservation"] == "exhausted" and r["expired"] == 6
    assert registry.sweep()["self_preservation"] == "normal"


def test_small_fleet_expires_normally(registry, pg):
    workspaces = fleet(registry, 3)
    age(pg, [workspaces[0][0], workspaces[1][0]], 400)  # 67 % silent, but only 2
    r = registry.sweep()
    assert r["expired"] == 2 and r["self_preservation"] == "normal"


def test_each_sweep_caps_how_many_it_expires(registry, pg, env):
    env(SWEEP_MAX_EXPIRE=3, SELF_PRESERVATION_THRESHOLD_PERCENT=100)
    workspaces = fleet(registry, 5)
    ids = [ws for ws, _ in workspaces]
    for i, ws in enumerate(ids):
        age(pg, [ws], 1000 - i)  # ids[0] is the oldest
    assert registry.sweep()["expired"] == 3
    assert [status_of(pg, ws) for ws in ids] == ["offline"] * 3 + ["online"] * 2  # oldest first
    assert registry.sweep()["expired"] == 2


def test_redis_flushed_mid_life_neither_keeps_nor_drops(registry, pg, rds):
    (alive, token), (dead, _) = fleet(registry, 2)
    age(pg, [dead], 500)
    rds.flushall()  # failover: every key gone
    rds.set(f"ws:{dead}", "online")  # and a stale key that survived elsewhere
    registry.sweep()
    assert status_of(pg, alive) == "online"  # no key, but Postgres saw its heartbeat
    assert status_of(pg, dead) == "offline"  # a key, but no heartbeat
    assert registry.heartbeat(alive, token).status == 200
    assert rds.get(f"ws:{alive}") == "online"  # the cache heals on the next heartbeat


def test_eventbridge_down_then_back_every_event_delivered(registry, pg, aws, env):
    env(EVENT_BUS_NAME="no-such-bus")
    from registry import events

    events.reset_client()
    made = [registry.registered() for _ in range(12)]
    ws, token = made[0]
    registry.heartbeat(ws, token, error_rate=0.9)
    registry.update_card(ws, {"v": 2}, token)
    assert aws.received() == []
    with pg.cursor() as cur:
        cur.execute("SELECT id::text FROM structure_events WHERE publish_pending ORDER BY created_at")
        pending = [r[0] for r in cur.fetchall()]
    assert len(pending) == 14
    env(EVENT_BUS_NAME="workspace-registry", EVENT_RELAY_GRACE_SECONDS=0)
    r = registry.sweep()
    assert r["relayed"] == 14 and r["pending_events"] == 0
    delivered = aws.received()
    assert [e["detail"]["event_id"] for e in delivered] == pending  # all, oldest first
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM structure_events WHERE publish_pending OR published_at IS NULL")
        assert cur.fetchone() == (0,)


def test_relay_leaves_young_events_to_their_request(registry, pg, aws, env):
    env(EVENT_BUS_NAME="no-such-bus")
    from registry import events

    events.reset_client()
    registry.registered()
    env(EVENT_BUS_NAME="workspace-registry", EVENT_RELAY_GRACE_SECONDS=3600)
    r = registry.sweep()
    assert r["relayed"] == 0 and r["pending_events"] == 1


def test_function_killed_between_commit_and_publish(registry, pg, aws, env, monkeypatch):
    """The statement committed, then the container died before PutEvents."""
    from registry import events

    def die(_events):
        raise SystemExit("container killed")

    monkeypatch.setattr(events, "put", die)
    with pytest.raises(SystemExit):
        registry.register()
    monkeypatch.undo()
    env(EVENT_RELAY_GRACE_SECONDS=0)
    assert aws.types() == []
    registry.sweep()
    assert aws.types() == ["WORKSPACE_ONLINE"]


def test_oversized_pending_event_is_dropped_not_blocking(registry, pg, aws, env):
    with pg.cursor() as cur:
        cur.execute(
            "INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending, created_at) VALUES ('AGENT_CARD_UPDATED', %s, %s, true, now() - interval '1 hour')",
            (new_id(), '{"agent_card": {"x": "%s"}}' % ("y" * 300_000)),
        )
        cur.execute(
            "INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending) VALUES ('WORKSPACE_ONLINE', %s, '{}', true)",
            (new_id(),),
        )
    env(EVENT_RELAY_GRACE_SECONDS=0)
    r = registry.sweep()
    assert r["pending_events"] == 0 and aws.types() == ["WORKSPACE_ONLINE"]
    with pg.cursor() as cur:
        cur.execute("SELECT publish_pending, published_at IS NULL FROM structure_events WHERE event_type = 'AGENT_CARD_UPDATED'")
        assert cur.fetchone() == (False, True)


def test_two_sweeps_at_once_expire_each_workspace_once(registry, pg, aws):
    workspaces = fleet(registry, 40)
    silent = [ws for ws, _ in workspaces[:5]]  # 12.5 %: normal expiry
    age(pg, silent, 400)
    aws.received()
    results = []
    barrier = threading.Barrier(2)

    def sweep():
        barrier.wait()
        results.append(registry.sweep())
        from registry import db

        db.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r["expired"] for r in results) == 5
    events = offline_events(aws)
    assert sorted(e["detail"]["workspace_id"] for e in events) == sorted(silent)


def test_sweep_skips_while_another_holds_the_lock(registry, pg, servers):
    ws, _ = registry.registered()
    age(pg, [ws], 400)
    other = psycopg2.connect(servers.database_url)
    cur = other.cursor()
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('workspace-registry/liveness-sweep', 0))")
    try:
        assert registry.sweep()["skipped"] is True
        assert status_of(pg, ws) == "online"
    finally:
        other.rollback()
        other.close()
    assert registry.sweep()["expired"] == 1


def test_sweep_skips_a_row_a_heartbeat_holds(registry, pg, servers):
    ws, _ = registry.registered()
    age(pg, [ws], 400)
    other = psycopg2.connect(servers.database_url)
    cur = other.cursor()
    cur.execute("SELECT 1 FROM workspaces WHERE id = %s FOR UPDATE", (ws,))
    try:
        assert registry.sweep()["expired"] == 0
    finally:
        other.rollback()
        other.close()


# --- deregister ----------------------------------------------------------

def test_deregister_goes_offline_now(registry, pg, rds, aws):
    ws, token = registry.registered()
    registry.heartbeat(ws, token, runtime_metadata={"idle_timeout_seconds": 60})
    aws.received()
    a = registry.deregister(ws, token)
    assert a.status == 200 and a.body == {"status": "deregistered"}
    assert status_of(pg, ws) == "offline"
    assert rds.keys(f"*{ws}*") == []
    [event] = offline_events(aws)
    assert event["detail"]["payload"] == {"reason": "deregistered", "previous_status": "online"}
    # a restart registers again with the same token
    assert registry.register(ws, token=token).status == 200
    assert status_of(pg, ws) == "online"


def test_deregister_needs_the_token(registry, pg, aws):
    ws, _ = registry.registered()
    _, other = registry.registered()
    aws.received()
    assert registry.deregister(ws).status == 401
    assert registry.deregister(ws, other).status == 401
    assert status_of(pg, ws) == "online" and aws.received() == []


def test_deregister_unknown_404_removed_410(registry, pg):
    assert registry.deregister(new_id()).status == 404
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    assert registry.deregister(ws, token).status == 410
    assert status_of(pg, ws) == "removed"


def test_deregister_keeps_platform_owned_status(registry, pg, aws):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'paused' WHERE id = %s", (ws,))
    aws.received()
    assert registry.deregister(ws, token).status == 200
    assert status_of(pg, ws) == "paused" and aws.received() == []


def test_deregister_bad_input(registry):
    from conftest import call

    assert call("/registry/deregister", {"workspace_id": "nope"}).status == 400
    assert call("/registry/deregister", None, raw="[").status == 400
