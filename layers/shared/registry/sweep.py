"""The liveness sweep: silent workspaces go offline, with self-preservation.

The seed learned that a workspace died from Redis key-expiry notifications
and a health sweep; a Lambda cannot hold a subscription, so a scheduled
sweep (every minute) does the work:

0. Write the steady heartbeats waiting in Redis to Postgres (write-behind,
   chunked): the decision below is made on fresh data. If Redis cannot be
   read, nothing is expired this run: beats it holds would look like
   silence (settings.steady_path_enabled explains the bound on staleness).
1. In one transaction: take the sweep lock (an overlapping sweep skips),
   count the fleet and the silent, decide with selfpreservation.decide(),
   expire up to the allowed number oldest-first and record WORKSPACE_OFFLINE
   for each, record REGISTRY_SELF_PRESERVATION when entering or leaving.
2. Remove the expired workspaces' Redis keys (one pipeline).
3. Publish what it recorded, then run the relay for anything left pending.
4. Ask a drainer to act for steady workspaces with queued A2A work (#1870).

Liveness is decided by Postgres' last_heartbeat_at, written by every
heartbeat in the same statement. Redis' ws:{id} is a cache for readers: a
flushed Redis (failover) is rebuilt by the next heartbeats and never makes
the sweep expire anyone; a Redis that kept a key cannot keep a dead
workspace online either, since the sweep does not read it.
"""

from __future__ import annotations

import json

import redis
from dataclasses import dataclass, field

from registry import db, events, liveness, relay, selfpreservation, statements, status
from registry.observability import count, logger, metrics
from registry.settings import get_settings, steady_path_enabled

# Up to this many online+degraded rows the fleet is counted exactly; above,
# the planner's estimate is used (bounded cost at any fleet size).
EXACT_FLEET_LIMIT = 10_000
# Steady beats written per statement: one statement per this many
# workspaces per sweep, whatever the fleet.
FLUSH_CHUNK = 1000
# Drain requests per sweep (#1870); the rest wait for the next sweep.
MAX_DRAIN_REQUESTS = 1000


@dataclass
class SweepResult:
    skipped: bool = False
    fleet: int = 0
    silent: int = 0
    expired: list[str] = field(default_factory=list)
    self_preservation: str = selfpreservation.NORMAL
    relay: relay.RelayResult | None = None
    flushed: int = 0  # steady beats written to Postgres
    flush_ok: bool = True  # False: Redis could not be read, nothing expired
    drains: int = 0  # QUEUE_DRAIN_REQUESTED published


def flush() -> tuple[int, bool]:
    """Write the steady beats waiting in Redis to Postgres and verify what
    Redis knows, a chunk of workspaces per round: (rows written, whether
    Redis answered). A beat is written at most once in effect: the
    statement never writes one older than what is stored."""
    written, after = 0, "00000000-0000-0000-0000-000000000000"
    if not steady_path_enabled():
        return 0, True  # every heartbeat went to Postgres
    while True:
        ids = [row["workspace_id"] for row in db.fetch(statements.FLUSH_CANDIDATES, {"after": after, "limit": FLUSH_CHUNK})]
        if not ids:
            return written, True
        try:
            known = liveness.read_for_flush(ids)
        except (redis.RedisError, OSError) as err:
            count("RedisFailures")
            logger.error("steady beats could not be read from Redis", extra={"error": type(err).__name__})
            return written, False
        if known:
            chunk = [{"id": k["id"], "token": k["token"], **_beat_columns(k["beat"])} for k in known]
            rows = db.fetch(statements.FLUSH_BEATS, {"chunk": json.dumps(chunk)})
            written += rows[-1]["written"]
            verdicts = [row for row in rows if row["workspace_id"] is not None]
            tokens = {k["id"]: k["token"] for k in known}
            confirmed = [(v["workspace_id"], tokens[v["workspace_id"]], v["status"]) for v in verdicts
                         if v["token_live"] and v["status"] in status.STEADY_STATUSES]
            dropped = [v["workspace_id"] for v in verdicts if not (v["token_live"] and v["status"] in status.STEADY_STATUSES)]
            try:
                liveness.rearm(confirmed, dropped)
            except (redis.RedisError, OSError) as err:
                # What Redis knows then simply expires (AUTH_CACHE_SECONDS).
                logger.warning("what Redis knows could not be re-armed", extra={"error": type(err).__name__})
        if len(ids) < FLUSH_CHUNK:
            return written, True
        after = ids[-1]


def _beat_columns(beat: dict | None) -> dict:
    keys = ("error_rate", "sample_error", "uptime_seconds", "monthly_spend")
    if not beat:
        return {"at": None, **dict.fromkeys(keys)}
    return {"at": float(beat.get("at", 0)), **{k: beat.get(k) for k in keys}}


def request_drains() -> int:
    """#1870 for steady workspaces: one statement, bounded."""
    rows = db.fetch(statements.DRAIN_CANDIDATES, {"limit": MAX_DRAIN_REQUESTS})
    events.publish([events.Event("QUEUE_DRAIN_REQUESTED", row["workspace_id"], {"active_tasks": row["active_tasks"]}) for row in rows])
    return len(rows)


def policy() -> selfpreservation.Policy:
    s = get_settings()
    return selfpreservation.Policy(
        threshold_percent=s.self_preservation_threshold_percent,
        min_silent=s.self_preservation_min_silent,
        max_seconds=s.self_preservation_max_seconds,
        max_expire=s.sweep_max_expire,
    )


def run() -> SweepResult:
    settings = get_settings()
    rules = policy()
    ttl = settings.liveness_ttl_seconds
    result = SweepResult()
    recorded: list[events.Event] = []
    result.flushed, result.flush_ok = flush()
    if not result.flush_ok:
        count("SweepExpirySkipped")
        logger.error("liveness sweep expires nothing this run: the steady beats in Redis could not be read")
    with db.transaction():
        begin = db.fetch(
            statements.SWEEP_BEGIN,
            {
                "ttl": ttl,
                "exact_fleet": EXACT_FLEET_LIMIT,
                "threshold_percent": rules.threshold_percent,
                "min_bound": max(rules.max_expire, rules.min_silent) + 1,
            },
        )[0]
        fleet, silent = begin["fleet"], begin["silent"]
        if not begin["locked"]:
            logger.info("liveness sweep skipped: another sweep holds the lock")
            count("SweepsSkipped")
            result.skipped = True
            return result
        result.fleet, result.silent = fleet, silent
        decision = selfpreservation.decide(fleet, silent, begin["state"], begin["active_for"], rules)
        if decision.expire and result.flush_ok:
            rows = db.fetch(statements.SWEEP_EXPIRE, {"ttl": ttl, "limit": decision.expire})
            recorded.extend(events.recorded(row) for row in rows)
            result.expired = [row["workspace_id"] for row in rows]
        if decision.entered or decision.left:
            payload = {
                "state": "entered" if decision.entered else "left",
                "silent": silent,
                "fleet": fleet,
                "threshold_percent": rules.threshold_percent,
            }
            row = db.fetch(
                statements.RECORD_EVENT,
                {"event_type": "REGISTRY_SELF_PRESERVATION", "workspace_id": None, "payload": json.dumps(payload)},
            )[0]
            recorded.append(events.recorded(row))
            log = logger.warning if decision.entered else logger.info
            log(f"self-preservation {payload['state']}", extra=payload)
        db.fetch(statements.SWEEP_SET_STATE, {"state": decision.state})
        result.self_preservation = decision.state

    if result.expired:
        liveness.clear_many(result.expired)
    events.publish(recorded)
    result.relay = relay.run()
    result.drains = request_drains()

    count("WorkspacesExpired", len(result.expired))
    metrics.add_metric(name="SilentWorkspaces", unit="Count", value=silent)
    metrics.add_metric(name="SteadyBeatsFlushed", unit="Count", value=result.flushed)
    metrics.add_metric(name="SelfPreservationActive", unit="Count", value=int(result.self_preservation == selfpreservation.ACTIVE))
    logger.info(
        "liveness sweep done",
        extra={
            "fleet": fleet,
            "silent": silent,
            "expired": len(result.expired),
            "self_preservation": result.self_preservation,
            "flushed": result.flushed,
            "drains": result.drains,
        },
    )
    return result
