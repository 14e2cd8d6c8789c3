"""The liveness sweep at fleet sizes up to 1,000,000 workspaces.

A database of its own (``registry_bench_sweep_<pid>`` on the same server,
migrated with the same SQL) holds the fleet, inserted with one
``INSERT ... SELECT FROM generate_series`` per size step: status online,
last heartbeat within the last 30 s. The registry's Postgres connection is
pointed at it for this section only (``db.set_dsn_provider``).

``LIVENESS_TTL_SECONDS`` is 3600 for this section so the fixture stays
"fresh" for as long as the section runs (a 1M-row fixture cannot be
re-heartbeated between measurements); silent workspaces get a last
heartbeat two hours old. The statements are the same; only the cut-off
parameter differs, and the sweep's cost depends on how many index entries
lie below the cut-off, not on its value.

Scenarios at each size (``registry.sweep.run()``, timed as a whole and by
part: each SQL statement, the Redis pipeline, PutEvents, the relay):

- none silent (the target: <= 50 ms at 1,000,000);
- 1 % silent with the default SWEEP_MAX_EXPIRE (500): a sweep expires 500;
- 1 % silent with SWEEP_MAX_EXPIRE=10000: one sweep expires all of them;
  both first with the planner statistics of before the silence (the silence
  began after the last ANALYZE, as in production), then after ANALYZE;
- the write-behind of steady heartbeats (``sweep.flush()``), with a beat
  waiting in Redis for every workspace and what Redis knows for each, as at
  steady state; the decision scenarios above run with AUTH_CACHE_SECONDS=0
  (no flush) so they stay comparable with the figures before it existed;
- the largest size only: ``lambda_handler`` of functions/liveness_sweep
  with none silent, and "churn": a share of the fleet heartbeated once
  since the last VACUUM with its previous version already past the
  cut-off, so dead index entries lie in the range the sweep scans.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Any

from bench.common import drop_database, log, scratch_database, statement_name, stdout_to_devnull, summary
from devstack.harness import SWEEP, LambdaContext, load_function, scheduled_event

# Per process, so two runs against one server (DATABASE_URL) do not collide.
DATABASE = f"registry_bench_sweep_{os.getpid()}"
SECTION_TTL = 3600


class Probe:
    """Wraps db.fetch and liveness.clear_many to time each part of a sweep."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def reset(self) -> None:
        self.parts = {}

    def _add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    @contextmanager
    def installed(self):
        from registry import db, liveness, relay

        real_fetch, real_clear, real_relay = db.fetch, liveness.clear_many, relay.run

        def fetch(sql, params=None):
            started = time.perf_counter()
            try:
                return real_fetch(sql, params)
            finally:
                self._add(f"sql:{statement_name(sql)}", time.perf_counter() - started)

        def clear_many(ids):
            started = time.perf_counter()
            try:
                return real_clear(ids)
            finally:
                self._add("redis:clear_many", time.perf_counter() - started)

        def relay_run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return real_relay(*args, **kwargs)
            finally:
                self._add("relay (all of it)", time.perf_counter() - started)

        db.fetch, liveness.clear_many, relay.run = fetch, clear_many, relay_run
        try:
            yield self
        finally:
            db.fetch, liveness.clear_many, relay.run = real_fetch, real_clear, real_relay


def _configure(**env: str) -> None:
    from registry import settings

    for key, value in env.items():
        os.environ[key] = value
    settings.get_settings.cache_clear()


def _timed_sweeps(reps: int, meter, probe: Probe, rearm=None, discard_first: bool = True) -> dict[str, Any]:
    """``reps`` sweeps (after one discarded warm-up unless told otherwise).
    A sweep that fails (the statement time-out: DatabaseUnavailable) is
    counted and timed, not retried."""
    from registry import db, sweep

    totals, puts, expired, silent, fleet = [], [], [], [], []
    failures: list[dict[str, Any]] = []
    parts: dict[str, list[float]] = {}
    runs = reps + (1 if discard_first else 0)
    with stdout_to_devnull():
        for i in range(runs):
            if rearm is not None:
                rearm()
            probe.reset()
            put_before = meter.seconds
            started = time.perf_counter()
            try:
                result = sweep.run()
            except db.DatabaseUnavailable as err:
                cause = str(err.__cause__).strip().splitlines()[0] if err.__cause__ else str(err)
                failures.append(
                    {"seconds": time.perf_counter() - started, "error": cause, "parts_ms": {k: v * 1000 for k, v in probe.parts.items()}}
                )
                continue
            elapsed = time.perf_counter() - started
            if discard_first and i == 0:
                continue
            totals.append(elapsed)
            puts.append(meter.seconds - put_before)
            expired.append(len(result.expired))
            silent.append(result.silent)
            fleet.append(result.fleet)
            for name, seconds in probe.parts.items():
                parts.setdefault(name, []).append(seconds)
    return {
        "runs": len(totals),
        "failed": len(failures),
        "failures": failures[:3],
        "total": summary(totals) if totals else None,
        "put_events": summary(puts) if puts else None,
        "parts_median_ms": {name: summary(values)["median_ms"] for name, values in sorted(parts.items())},
        "expired_per_sweep": max(expired) if expired else 0,
        "silent_seen": max(silent) if silent else 0,
        "fleet_seen": max(fleet) if fleet else 0,
    }


def measure(database_url: str, fleet: int, reps: int, meter, churn_fraction: float) -> dict[str, Any]:
    import psycopg2
    from registry import db

    sizes = sorted({min(10_000, fleet), max(fleet // 10, 10), fleet})
    dsn = scratch_database(database_url, DATABASE)

    saved_env = {k: os.environ.get(k) for k in ("LIVENESS_TTL_SECONDS", "SWEEP_MAX_EXPIRE", "AUTH_CACHE_SECONDS")}
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    # The fixture's own session builds a million rows: not bound by the
    # registry role's request time-outs (migration 0007).
    cur.execute("SET statement_timeout = 0")
    probe = Probe()
    db.set_dsn_provider(lambda: dsn)
    out: dict[str, Any] = {"sizes": sizes, "ttl_seconds": SECTION_TTL, "reps": reps, "by_size": {}}
    try:
        inserted = 0
        with probe.installed():
            for size in sizes:
                log(f"sweep: fleet {size:,}: inserting {size - inserted:,} workspaces")
                started = time.perf_counter()
                # The listing index (migration 0010) is filled as its insert
                # trigger would, in one statement (per row it costs about
                # 40 us: a minute at 1,000,000); the sweep reads only status.
                cur.execute(
                    """
                    SET synchronous_commit = off;
                    ALTER TABLE workspaces DISABLE TRIGGER registry_fleet_inserted;
                    INSERT INTO workspaces (id, name, url, status, last_heartbeat_at, agent_card)
                    SELECT md5('bench-ws-' || g)::uuid, 'bench-' || g, 'http://localhost:8000', 'online',
                           now() - (g %% 30) * interval '1 second', '{"name": "agent"}'::jsonb
                    FROM generate_series(%s, %s) g;
                    ALTER TABLE workspaces ENABLE TRIGGER registry_fleet_inserted;
                    INSERT INTO registry_fleet (id, status, created_at, changed_at, terms)
                    SELECT md5('bench-ws-' || g)::uuid, 'online', now(), now(), array_to_tsvector(ARRAY['agent', 'bench', g::text])
                    FROM generate_series(%s, %s) g;
                    SET synchronous_commit = on;
                    """,
                    (inserted + 1, size, inserted + 1, size),
                )
                insert_seconds = time.perf_counter() - started
                cur.execute("VACUUM ANALYZE workspaces")
                inserted = size
                entry: dict[str, Any] = {"insert_seconds": insert_seconds}
                silent_count = max(size // 100, 1)

                def silence(n: int = silent_count) -> None:
                    cur.execute(
                        """UPDATE workspaces SET last_heartbeat_at = now() - interval '2 hours'
                           WHERE id IN (SELECT id FROM workspaces WHERE status = 'online' ORDER BY id LIMIT %s)""",
                        (n,),
                    )

                def rearm() -> None:
                    # The expired ones come back online with their old
                    # heartbeat: silent again for the next sweep.
                    cur.execute("UPDATE workspaces SET status = 'online' WHERE status = 'offline'")

                def revive() -> None:
                    cur.execute(
                        "UPDATE workspaces SET status = 'online', last_heartbeat_at = now() WHERE last_heartbeat_at < now() - interval '1 hour'"
                    )
                    cur.execute("UPDATE structure_events SET publish_pending = false WHERE publish_pending")
                    cur.execute("UPDATE registry_sweep_state SET self_preservation = 'normal', self_preservation_since = NULL")
                    cur.execute("VACUUM ANALYZE workspaces")
                    cur.execute("VACUUM ANALYZE structure_events")

                _configure(LIVENESS_TTL_SECONDS=str(SECTION_TTL), SWEEP_MAX_EXPIRE="500", AUTH_CACHE_SECONDS="0")
                log(f"sweep: fleet {size:,}: none silent, {reps} sweeps")
                entry["none_silent"] = _timed_sweeps(reps, meter, probe)

                # The silence starts after the last ANALYZE, as it does in
                # production: the planner's statistics have not seen it yet.
                silence()
                cap_all = str(max(10_000, silent_count))
                for stats in ("stale", "fresh"):
                    if stats == "fresh":
                        cur.execute("ANALYZE workspaces")
                    _configure(SWEEP_MAX_EXPIRE="500")
                    log(f"sweep: fleet {size:,}: {silent_count:,} silent (1 %), SWEEP_MAX_EXPIRE=500, {stats} statistics")
                    entry[f"one_percent_cap_500_{stats}_stats"] = _timed_sweeps(max(3, reps // 3), meter, probe, rearm=rearm)
                    _configure(SWEEP_MAX_EXPIRE=cap_all)
                    log(f"sweep: fleet {size:,}: {silent_count:,} silent (1 %), SWEEP_MAX_EXPIRE={cap_all}, {stats} statistics")
                    entry[f"one_percent_all_{stats}_stats"] = _timed_sweeps(2, meter, probe, rearm=rearm, discard_first=False)
                    entry[f"one_percent_all_{stats}_stats"]["sweep_max_expire"] = int(cap_all)
                    rearm()
                _configure(SWEEP_MAX_EXPIRE="500")
                revive()
                entry["flush"] = _flush(cur, size)

                if size == sizes[-1]:
                    entry["handler_none_silent"] = _handler_sweeps(reps)
                    entry["churn"] = _churn(cur, size, churn_fraction, meter, probe)
                out["by_size"][str(size)] = entry
    finally:
        db.set_dsn_provider(db._dsn_from_settings)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from registry import settings

        settings.get_settings.cache_clear()
        cur.close()
        conn.close()
        drop_database(database_url, DATABASE)
    largest = out["by_size"][str(sizes[-1])]
    out["target_ms"] = 50.0
    out["none_silent_median_ms"] = largest["none_silent"]["total"]["median_ms"] if largest["none_silent"]["total"] else float("nan")
    out["target_met"] = out["none_silent_median_ms"] <= 50.0
    return out


def _flush(cur, size: int) -> dict[str, Any]:
    """sweep.flush() with a steady beat waiting in Redis for every workspace
    and what Redis knows for each (its token live in Postgres), as at steady
    state: every beat is newer than the row, so every row is written."""
    import hashlib
    import json

    import redis
    from registry import db, liveness, sweep

    cur.execute(
        """INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix)
           SELECT id, sha256(id::text::bytea), 'bench' FROM workspaces w
           WHERE NOT EXISTS (SELECT 1 FROM workspace_auth_tokens t WHERE t.workspace_id = w.id)"""
    )
    cur.execute("SELECT id::text FROM workspaces WHERE status IN ('online', 'degraded')")
    ids = [row[0] for row in cur.fetchall()]
    log(f"sweep: fleet {size:,}: writing {len(ids):,} steady beats to Redis for the flush")
    # The fixture's own client: the registry's has a 0.5 s read time-out
    # (right for a request), and FLUSHDB of a million workspaces' keys
    # takes longer than that.
    pool = liveness.client().connection_pool
    r = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **{**pool.connection_kwargs, "socket_timeout": None}))
    beat = json.dumps({"at": f"{time.time():.3f}", "error_rate": 0.0, "sample_error": "", "uptime_seconds": 60, "monthly_spend": None})
    for start in range(0, len(ids), 5000):
        pipe = r.pipeline(transaction=False)
        for ws in ids[start : start + 5000]:
            pipe.hset(liveness.runtime_key(ws), "beat", beat)
            pipe.hset(liveness.auth_key(ws), mapping={"token": hashlib.sha256(ws.encode()).hexdigest(), "status": "online", "current_task": "", "active_tasks": "0"})
        pipe.execute()
    _configure(AUTH_CACHE_SECONDS="90")
    sent: dict[str, int] = {}
    real = db.fetch

    def counting(sql, params=None):
        name = statement_name(sql)
        sent[name] = sent.get(name, 0) + 1
        return real(sql, params)

    db.fetch = counting
    # A whole pass, however long (a sweep stops at FLUSH_SECONDS and
    # resumes next time): what one pass over this fleet costs.
    budget, sweep.FLUSH_SECONDS = sweep.FLUSH_SECONDS, float("inf")
    started = time.perf_counter()
    try:
        with stdout_to_devnull():
            done = sweep.flush(SECTION_TTL)
        written, ok = done.written, done.redis_ok
    finally:
        db.fetch = real
        sweep.FLUSH_SECONDS = budget
        _configure(AUTH_CACHE_SECONDS="0")
    seconds = time.perf_counter() - started
    r.flushdb()
    r.connection_pool.disconnect()
    return {
        "workspaces": len(ids),
        "written": written,
        "redis_ok": ok,
        "seconds": seconds,
        "per_1000_workspaces_ms": seconds * 1000 / max(len(ids), 1) * 1000,
        "statements": sent,
        "statements_per_1000_workspaces": sum(sent.values()) * 1000 / max(len(ids), 1),
        "budget_seconds": budget,
        "sweeps_per_pass": max(1, math.ceil(seconds / budget)),
    }


def _handler_sweeps(reps: int) -> dict[str, Any]:
    """The scheduled function itself (Powertools decorators included)."""
    fn = load_function(SWEEP)
    event = scheduled_event()
    totals = []
    with stdout_to_devnull():
        fn.lambda_handler(event, LambdaContext(SWEEP))
        for _ in range(reps):
            context = LambdaContext(SWEEP)
            started = time.perf_counter()
            fn.lambda_handler(event, context)
            totals.append(time.perf_counter() - started)
    return {"total": summary(totals)}


def _churn(cur, size: int, fraction: float, meter, probe: Probe) -> dict[str, Any]:
    """Dead index entries below the cut-off: ``fraction`` of the fleet
    heartbeated once since the last VACUUM, and the version it replaced is
    already older than the TTL. (With 1M workspaces every 30 s, 10 % is
    three seconds of heartbeats.) Sweeps before and after VACUUM."""
    n = max(int(size * fraction), 1)
    log(f"sweep: fleet {size:,}: churn, {n:,} dead index entries below the cut-off")
    cur.execute(
        """UPDATE workspaces SET last_heartbeat_at = now() - interval '2 hours'
           WHERE id IN (SELECT id FROM workspaces ORDER BY id LIMIT %s)""",
        (n,),
    )
    cur.execute("UPDATE workspaces SET last_heartbeat_at = now() WHERE last_heartbeat_at < now() - interval '1 hour'")
    result: dict[str, Any] = {"dead_entries": n, "fraction": fraction}
    result["first_sweep"] = _timed_sweeps(1, meter, probe, discard_first=False)
    result["second_sweep"] = _timed_sweeps(1, meter, probe, discard_first=False)
    started = time.perf_counter()
    cur.execute("VACUUM workspaces")
    result["vacuum_seconds"] = time.perf_counter() - started
    result["after_vacuum"] = _timed_sweeps(3, meter, probe, discard_first=False)
    return result
