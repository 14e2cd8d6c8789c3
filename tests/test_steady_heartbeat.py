"""The steady heartbeat: one Redis round trip, no Postgres, Postgres only
for changes (service._steady, liveness.steady_beat), and the sweep's
write-behind of its telemetry (sweep.flush).

Every answer stays what the Postgres path gives; what Redis knows is valid
while the liveness key exists (the platform deletes it when it removes,
restarts or hibernates a workspace) and for AUTH_CACHE_SECONDS after a
Postgres call wrote it.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import new_id
from registry.liveness import auth_key, internal_url_key, liveness_key, runtime_key, url_key

from devstack import harness


def pg_beat(pg, ws):
    with pg.cursor() as cur:
        cur.execute(
            "SELECT last_heartbeat_at, last_error_rate, last_sample_error, uptime_seconds, monthly_spend, status::text FROM workspaces WHERE id = %s",
            (ws,),
        )
        return cur.fetchone()


def steady_workspace(registry, **beat):
    """Registered, and one Postgres-path heartbeat that cached what the
    steady path checks."""
    ws, token = registry.registered()
    assert registry.heartbeat(ws, token, **beat).status == 200
    return ws, token


def clear_workspace_keys(rds, ws):
    """What the platform's ClearWorkspaceKeys deletes (remove, hibernate,
    pause, restart detection): the seed's three keys, not ours."""
    rds.delete(liveness_key(ws), url_key(ws), internal_url_key(ws))


def test_a_steady_beat_writes_no_row_and_records_its_telemetry_in_redis(registry, pg, rds):
    ws, token = steady_workspace(registry, current_task="t")
    before = pg_beat(pg, ws)
    rds.expire(liveness_key(ws), 10)
    assert registry.heartbeat(ws, token, current_task="t", uptime_seconds=77, error_rate=0.05, sample_error="x", monthly_spend=42).status == 200
    assert pg_beat(pg, ws) == before  # no Postgres write
    beat = json.loads(rds.hget(runtime_key(ws), "beat"))
    assert {k: beat[k] for k in ("uptime_seconds", "error_rate", "sample_error", "monthly_spend")} == {
        "uptime_seconds": 77, "error_rate": 0.05, "sample_error": "x", "monthly_spend": 42,
    }
    assert rds.ttl(liveness_key(ws)) > 170  # liveness refreshed


def test_what_redis_knows_comes_from_postgres_and_expires(registry, rds, env):
    env(AUTH_CACHE_SECONDS=45)
    ws, token = steady_workspace(registry, current_task="t", active_tasks=2)
    known = rds.hgetall(auth_key(ws))
    import hashlib

    assert known == {"token": hashlib.sha256(token.encode()).hexdigest(), "status": "online", "current_task": "t", "active_tasks": "2"}
    assert 0 < rds.ttl(auth_key(ws)) <= 45


def test_a_minted_token_is_never_cached_so_its_first_use_reaches_postgres(registry, pg, rds):
    ws, token = registry.registered()
    assert not rds.exists(auth_key(ws))
    assert registry.heartbeat(ws, token).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT confirmed_at IS NOT NULL FROM workspace_auth_tokens WHERE workspace_id = %s", (ws,))
        assert cur.fetchone() == (True,)


@pytest.mark.parametrize(
    "change, event",
    [
        ({"error_rate": 0.9}, "WORKSPACE_DEGRADED"),
        ({"runtime_state": "wedged"}, "WORKSPACE_DEGRADED"),
        ({"current_task": "new"}, "TASK_UPDATED"),
        ({"active_tasks": 3}, None),
    ],
)
def test_anything_that_changes_takes_the_postgres_path(registry, pg, aws, change, event):
    ws, token = steady_workspace(registry)
    aws.received()
    before = pg_beat(pg, ws)
    assert registry.heartbeat(ws, token, **change).status == 200
    assert pg_beat(pg, ws)[0] > before[0]  # written by the Postgres path
    types = [e["detail-type"] for e in aws.received()]
    assert types == ([event] if event else [])


def test_wrong_or_missing_token_answers_as_before(registry):
    ws, _ = steady_workspace(registry)
    _, other = registry.registered()
    a = registry.heartbeat(ws, other)
    assert (a.status, a.body["error"]) == (401, "invalid workspace auth token")
    a = registry.heartbeat(ws)
    assert (a.status, a.body["error"]) == (401, "missing workspace auth token")


def test_the_platform_removing_a_workspace_is_seen_on_the_next_beat(registry, pg, rds):
    """As the platform does it: status set, its keys cleared."""
    ws, token = steady_workspace(registry)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    clear_workspace_keys(rds, ws)
    a = registry.heartbeat(ws, token)
    assert (a.status, a.body["error"]) == (410, "workspace is removed")


def test_a_revoked_token_with_keys_cleared_is_refused_on_the_next_beat(registry, pg, rds):
    ws, token = steady_workspace(registry)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = %s", (ws,))
        # and the platform issues a new one, as its provisioner does
        cur.execute("INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix) VALUES (%s, sha256('new'::bytea), 'new')", (ws,))
    clear_workspace_keys(rds, ws)
    assert registry.heartbeat(ws, token).status == 401


def test_a_change_made_directly_in_postgres_is_seen_once_the_cache_expires(registry, pg, rds):
    ws, token = steady_workspace(registry)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'paused' WHERE id = %s", (ws,))
    assert registry.heartbeat(ws, token).status == 200  # within AUTH_CACHE_SECONDS: still steady
    assert pg_beat(pg, ws)[5] == "paused"
    rds.delete(auth_key(ws))  # AUTH_CACHE_SECONDS later
    before = pg_beat(pg, ws)
    assert registry.heartbeat(ws, token).status == 200
    after = pg_beat(pg, ws)
    assert after[0] > before[0] and after[5] == "paused"  # Postgres path, platform status kept
    assert not rds.exists(auth_key(ws)) or rds.hget(auth_key(ws), "status") == "paused"


def test_runtime_overrides_follow_the_seed_rule_on_the_steady_path(registry, rds):
    ws, token = steady_workspace(registry, runtime_metadata={"capabilities": {"heartbeat": True}, "idle_timeout_seconds": 600})
    assert registry.heartbeat(ws, token, runtime_metadata={"capabilities": {"heartbeat": False}, "idle_timeout_seconds": 900}).status == 200
    assert rds.hget(runtime_key(ws), "idle_timeout_seconds") == "900"
    assert json.loads(rds.hget(runtime_key(ws), "capabilities")) == {"heartbeat": False}
    assert registry.heartbeat(ws, token).status == 200  # no runtime_metadata: both cleared
    assert rds.hget(runtime_key(ws), "idle_timeout_seconds") is None and rds.hget(runtime_key(ws), "capabilities") is None


def test_the_sweep_writes_steady_beats_behind_guarded(registry, pg, rds):
    ws, token = steady_workspace(registry)
    removed, removed_token = steady_workspace(registry)
    assert registry.heartbeat(ws, token, uptime_seconds=500, error_rate=0.05, sample_error="s", monthly_spend=99).status == 200
    assert registry.heartbeat(removed, removed_token, uptime_seconds=500).status == 200
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (removed,))
    stamped = float(json.loads(rds.hget(runtime_key(ws), "beat"))["at"])
    answer = registry.sweep()
    assert answer["flushed"] == 1 and answer["expired"] == 0
    at, error_rate, sample, uptime, spend, status = pg_beat(pg, ws)
    assert (error_rate, sample, uptime, spend, status) == (0.05, "s", 500, 99, "online")
    assert abs(at.timestamp() - stamped) < 0.01
    assert pg_beat(pg, removed)[3] != 500  # #73: a removed row is never written
    # never older than what is stored: a later Postgres-path beat wins
    assert registry.heartbeat(ws, token, current_task="changed").status == 200
    newer = pg_beat(pg, ws)[0]
    registry.sweep()
    assert pg_beat(pg, ws)[0] == newer


def test_a_redis_that_loses_its_data_never_expires_a_workspace_that_kept_beating(registry, pg, rds, env):
    """The inequality at work on a compressed clock: TTL 4 s > sweep every
    1 s + heartbeat every 1 s (with room for a loaded machine's pauses).
    Redis is flushed mid-life, between two sweeps, with steady beats in it
    that no sweep wrote yet."""
    env(LIVENESS_TTL_SECONDS=4, SWEEP_INTERVAL_SECONDS=1, HEARTBEAT_INTERVAL_SECONDS=1)
    alive, token = steady_workspace(registry)
    dead, _ = registry.registered()  # never heartbeats: the control
    started = time.monotonic()
    flushed = False
    next_sweep = started + 1
    while time.monotonic() - started < 6.5:
        assert registry.heartbeat(alive, token).status == 200
        now = time.monotonic()
        if not flushed and now - started > 1.6:
            rds.flushall()  # an ElastiCache failover that lost the data
            flushed = True
        if now >= next_sweep:
            registry.sweep()
            next_sweep += 1
            assert pg_beat(pg, alive)[5] == "online"
        time.sleep(0.45)
    assert flushed and pg_beat(pg, alive)[5] == "online" and pg_beat(pg, dead)[5] == "offline"


def test_without_the_inequality_the_steady_path_is_off(registry, pg, env, caplog):
    from registry import settings

    settings._warned_inequality = False
    env(LIVENESS_TTL_SECONDS=60, SWEEP_INTERVAL_SECONDS=60, HEARTBEAT_INTERVAL_SECONDS=30)
    ws, token = steady_workspace(registry)
    before = pg_beat(pg, ws)
    assert registry.heartbeat(ws, token).status == 200
    assert pg_beat(pg, ws)[0] > before[0]
    assert "steady heartbeat path off" in caplog.text


def test_the_auth_cache_off_means_postgres_every_time(registry, pg, env):
    env(AUTH_CACHE_SECONDS=0)
    ws, token = steady_workspace(registry)
    before = pg_beat(pg, ws)
    assert registry.heartbeat(ws, token).status == 200
    assert pg_beat(pg, ws)[0] > before[0]


def test_redis_unreachable_at_sweep_time_expires_nobody(registry, pg, env, tmp_path, caplog):
    """Steady beats only Redis holds would look like silence: the sweep
    decides nothing rather than expire workspaces that are alive."""
    from registry import liveness

    ws, token = steady_workspace(registry)
    assert registry.heartbeat(ws, token).status == 200  # steady: Redis only
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s", (ws,))
    env(REDIS_URL=f"unix://{tmp_path}/gone.sock")
    liveness.reset()
    answer = registry.sweep()
    assert answer["expired"] == 0 and pg_beat(pg, ws)[5] == "online"
    assert "expires nothing this run" in caplog.text


def test_a_sweep_that_cannot_check_the_beats_neither_enters_nor_leaves_self_preservation(registry, pg, env, tmp_path, aws):
    """The silent count then holds workspaces whose beats wait in Redis: a
    fleet that looks all silent is not a reason to announce anything."""
    from registry import liveness

    fleet = dict(steady_workspace(registry) for _ in range(6))
    for ws, token in fleet.items():
        assert registry.heartbeat(ws, token).status == 200  # steady: Redis only
    age(pg, *fleet)
    aws.received()
    env(REDIS_URL=f"unix://{tmp_path}/gone.sock")
    liveness.reset()
    answer = registry.sweep()
    assert (answer["expired"], answer["self_preservation"]) == (0, "normal")
    assert [e["detail-type"] for e in aws.received()] == []
    with pg.cursor() as cur:
        cur.execute("SELECT self_preservation FROM registry_sweep_state")
        assert cur.fetchone() == ("normal",)


def test_queued_work_of_a_steady_workspace_is_drained_by_the_sweep(registry, pg, aws):
    """#1870: a steady beat cannot see a2a_queue; the sweep asks instead."""
    idle, token = steady_workspace(registry, active_tasks=0)
    busy, busy_token = steady_workspace(registry, active_tasks=1)  # max_concurrent_tasks 1: no capacity
    with pg.cursor() as cur:
        for ws in (idle, busy):
            cur.execute("INSERT INTO a2a_queue (workspace_id, body) VALUES (%s, '{}')", (ws,))
    aws.received()
    assert registry.heartbeat(idle, token, active_tasks=0).status == 200  # steady: no drain event
    assert aws.received() == []
    assert registry.sweep()["drains"] == 1
    drains = [e for e in aws.received() if e["detail-type"] == "QUEUE_DRAIN_REQUESTED"]
    assert [(e["detail"]["workspace_id"], e["detail"]["payload"]) for e in drains] == [(idle, {"active_tasks": 0})]


def test_the_script_keeps_to_one_slot_on_a_cluster(registry, pg, tmp_path, use_redis):
    """ElastiCache Serverless is a cluster: a script may only touch keys of
    one hash slot. The hash tag {ws:<id>} puts the registry's keys in the
    slot of the seed's ws:<id>; a one-node cluster enforces the rule."""
    admin = use_redis(harness.RedisServer.cluster(tmp_path)).client()
    with pytest.raises(Exception, match="same slot|CROSSSLOT|cross"):  # the rule this test depends on
        admin.eval("return redis.call('GET', KEYS[2])", 2, "ws:a", "ws:a:url")
    ws = new_id()
    assert [admin.cluster("keyslot", k) for k in (liveness_key(ws), auth_key(ws), runtime_key(ws))] == [admin.cluster("keyslot", liveness_key(ws))] * 3
    ws, token = steady_workspace(registry)
    before = pg_beat(pg, ws)
    assert registry.heartbeat(ws, token, uptime_seconds=5).status == 200
    assert pg_beat(pg, ws) == before and admin.hget(runtime_key(ws), "beat") is not None
    assert registry.sweep()["flushed"] == 1


def test_the_sweep_rearms_what_redis_knows_while_postgres_agrees(registry, rds, env):
    env(AUTH_CACHE_SECONDS=90)
    ws, token = steady_workspace(registry)
    rds.expire(auth_key(ws), 5)  # as if written 85 s ago
    assert registry.sweep()["expired"] == 0
    assert 85 < rds.ttl(auth_key(ws)) <= 90
    assert registry.heartbeat(ws, token).status == 200


def test_a_token_revoked_in_postgres_is_refused_after_the_next_sweep(registry, pg, rds):
    """No key cleared, no cache expiry: the sweep's check sees it."""
    ws, token = steady_workspace(registry)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = %s", (ws,))
        cur.execute("INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix) VALUES (%s, sha256('other'::bytea), 'other')", (ws,))
    registry.sweep()
    assert not rds.exists(auth_key(ws))
    assert registry.heartbeat(ws, token).status == 401


def test_a_status_set_in_postgres_is_seen_after_the_next_sweep(registry, pg, rds):
    """Redis says online, the row was set degraded by hand: the sweep drops
    what Redis knows, and the next beat, on the Postgres path, applies the
    rules to the real status (recovery to online, with its event). A status
    the sweep does not visit (paused, hibernated) is seen when the cache
    expires (test_a_change_made_directly_in_postgres_is_seen_once_the_cache_expires)."""
    ws, token = steady_workspace(registry)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'degraded' WHERE id = %s", (ws,))
    registry.sweep()
    assert not rds.exists(auth_key(ws))
    assert registry.heartbeat(ws, token).status == 200
    assert pg_beat(pg, ws)[5] == "online"


def test_at_steady_state_postgres_sees_only_the_sweeps_batched_statements(registry, pg):
    """A fleet of steady agents, three rounds of beats and a sweep after
    each: the heartbeats send no statement at all."""
    from registry import db

    fleet = [steady_workspace(registry) for _ in range(12)]
    sent: list[str] = []
    real = db.fetch

    def counting(sql, params=None):
        sent.append(sql)
        return real(sql, params)

    db.fetch = counting
    try:
        for _ in range(3):
            before = len(sent)
            for ws, token in fleet:
                assert registry.heartbeat(ws, token).status == 200
            assert sent[before:] == []  # the beats themselves: no statement at all
            registry.sweep()
    finally:
        db.fetch = real
    from registry import statements

    request_statements = [s for s in sent if s in (statements.HEARTBEAT, statements.REGISTER)]
    assert request_statements == []
    assert sent.count(statements.FLUSH_BEATS) == 3  # one chunk per sweep for 12 workspaces
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspaces WHERE id = ANY(%s::uuid[]) AND last_heartbeat_at > now() - interval '30 seconds'", ([w for w, _ in fleet],))
        assert cur.fetchone() == (12,)


def age(pg, *workspaces, by="1 hour"):
    """Postgres holds these as silent (their last written beat is old)."""
    with pg.cursor() as cur:
        cur.execute(f"UPDATE workspaces SET last_heartbeat_at = now() - interval '{by}' WHERE id = ANY(%s::uuid[])", (list(workspaces),))


def uptime_in_postgres(pg, fleet):
    with pg.cursor() as cur:
        cur.execute("SELECT id::text, uptime_seconds FROM workspaces WHERE id = ANY(%s::uuid[])", (fleet,))
        return dict(cur.fetchall())


def test_a_fleet_too_large_for_one_sweep_is_written_over_several(registry, pg, rds, monkeypatch):
    """Each sweep writes for at most FLUSH_SECONDS (here none: one chunk of
    5 per sweep) and the next resumes after the last workspace written."""
    from registry import sweep

    monkeypatch.setattr(sweep, "FLUSH_CHUNK", 5)
    monkeypatch.setattr(sweep, "FLUSH_SECONDS", 0.0)
    fleet = dict(steady_workspace(registry) for _ in range(12))
    for ws, token in fleet.items():
        assert registry.heartbeat(ws, token, uptime_seconds=900).status == 200  # steady: Redis only
    ids = sorted(fleet)
    written = []
    for expected in (ids[:5], ids[:10], ids):
        written.append(registry.sweep()["flushed"])
        assert sorted(ws for ws, up in uptime_in_postgres(pg, ids).items() if up == 900) == expected
    assert written == [5, 5, 2]
    assert rds.get("registry:flush-cursor") is not None  # the third went round to a full chunk and stopped there


def test_a_sweep_resumes_at_its_cursor_goes_round_and_clears_it(registry, pg, rds):
    fleet = dict(steady_workspace(registry) for _ in range(6))
    for ws, token in fleet.items():
        assert registry.heartbeat(ws, token, uptime_seconds=900).status == 200
    ids = sorted(fleet)
    rds.set("registry:flush-cursor", ids[2])
    assert registry.sweep()["flushed"] == 6  # from the cursor to the end, then from the start round to it
    assert set(uptime_in_postgres(pg, ids).values()) == {900}
    assert rds.get("registry:flush-cursor") is None
    rds.set("registry:flush-cursor", "not an id")  # never trusted: the start
    assert registry.sweep()["expired"] == 0


def test_the_silent_ones_are_written_first_whatever_part_of_the_fleet_the_rest_reaches(registry, pg, monkeypatch):
    """The write-behind reaches one chunk of the fleet this sweep, but a
    steady workspace whose written beat is old is checked before the
    decision, so it is never expired for a beat that waits in Redis."""
    from registry import sweep

    monkeypatch.setattr(sweep, "FLUSH_CHUNK", 5)
    monkeypatch.setattr(sweep, "FLUSH_SECONDS", 0.0)
    fleet = dict(steady_workspace(registry) for _ in range(12))
    dead, _ = registry.registered()
    late = sorted(fleet)[-3:]  # beyond the one chunk the rest of the write-behind reaches
    age(pg, dead, *late)
    for ws in late:
        assert registry.heartbeat(ws, fleet[ws]).status == 200  # steady: Redis only, Postgres still says an hour ago
    assert registry.sweep()["expired"] == 1
    with pg.cursor() as cur:
        cur.execute("SELECT id::text, status::text FROM workspaces WHERE id = ANY(%s::uuid[])", ([dead, *late],))
        assert dict(cur.fetchall()) == {dead: "offline", **{ws: "online" for ws in late}}


def test_silent_ones_that_cannot_all_be_checked_in_time_expire_nobody(registry, pg, monkeypatch, caplog):
    from registry import sweep

    dead = [registry.registered()[0] for _ in range(3)]
    age(pg, *dead)
    monkeypatch.setattr(sweep, "FLUSH_CHUNK", 2)
    monkeypatch.setattr(sweep, "FLUSH_SECONDS", 0.0)
    assert registry.sweep()["expired"] == 0
    assert "could not all be checked in time" in caplog.text
    monkeypatch.setattr(sweep, "FLUSH_SECONDS", 20.0)
    assert registry.sweep()["expired"] == 3
