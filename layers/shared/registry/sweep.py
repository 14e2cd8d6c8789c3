"""The liveness sweep: silent workspaces go offline, with self-preservation.

The seed learned that a workspace died from Redis key-expiry notifications
and a health sweep; a Lambda cannot hold a subscription, so a scheduled
sweep (every minute) does the work:

0. Write the steady heartbeats waiting in Redis to Postgres (write-behind,
   chunked, within a time budget): first those of every workspace Postgres
   holds as silent, so the decision below is made on fresh data, then the
   rest of the fleet, resuming where the last sweep stopped. If Redis
   cannot be read, or the silent ones could not all be checked in time,
   nothing is expired this run: beats Redis holds would look like silence
   (settings.steady_path_enabled explains the bound on staleness).
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
import time
import uuid
from dataclasses import dataclass, field

import redis

from registry import db, events, liveness, relay, selfpreservation, statements, status
from registry.observability import count, logger, metrics
from registry.settings import get_settings, steady_path_enabled

# Up to this many online+degraded rows the fleet is counted exactly; above,
# the planner's estimate is used (bounded cost at any fleet size).
EXACT_FLEET_LIMIT = 10_000
# Steady beats written per statement: one statement per this many
# workspaces per sweep, whatever the fleet.
FLUSH_CHUNK = 1000
# The write-behind's time per sweep (the function's time-out is 55 s; the
# decision, the relay and the drains follow). About 90 ms per 1,000
# workspaces on a 2-core machine (make bench): a few hundred thousand per
# sweep; a larger fleet is written over several sweeps.
FLUSH_SECONDS = 20.0
ZERO_ID = "00000000-0000-0000-0000-000000000000"
LAST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
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
    flush_ok: bool = True  # False: the silent ones' beats were not all checked, nothing expired
    drains: int = 0  # QUEUE_DRAIN_REQUESTED published


@dataclass
class Flush:
    written: int = 0  # rows that took a newer beat
    redis_ok: bool = True  # False: Redis could not be read
    suspects_done: bool = True  # every workspace Postgres holds as silent was checked
    went_round: bool = True  # the whole fleet was visited (else: resumes at the cursor)

    @property
    def decidable(self) -> bool:
        """Whether Postgres now holds every beat the decision depends on."""
        return self.redis_ok and self.suspects_done


def flush(ttl: int) -> Flush:
    """Write the steady beats waiting in Redis to Postgres, verify what
    Redis knows, and re-arm or drop it, a chunk of workspaces per round.

    First the workspaces Postgres holds as silent (the only ones the
    decision can expire), stalest first; then the fleet in id order from
    where the last sweep stopped, round to it again, until FLUSH_SECONDS
    have passed. A fleet too large for one sweep is written over several
    (its columns are then that many sweeps old); the decision never waits
    for that, only for the silent ones. A beat is written at most once in
    effect: the statement never writes one older than what is stored."""
    result = Flush()
    if not steady_path_enabled():
        return result  # every heartbeat went to Postgres
    deadline = time.monotonic() + FLUSH_SECONDS
    try:
        at, after = "-infinity", ZERO_ID
        while True:
            rows = db.fetch(statements.FLUSH_SUSPECTS, {"ttl": ttl, "after_at": at, "after_id": after, "limit": FLUSH_CHUNK})
            if rows:
                result.written += _flush_chunk([row["workspace_id"] for row in rows])
            if len(rows) < FLUSH_CHUNK:
                break
            if time.monotonic() >= deadline:
                result.suspects_done = False
                break
            at, after = rows[-1]["at"], rows[-1]["workspace_id"]
        start = _cursor(liveness.flush_cursor())
        # From the cursor to the end, then from the start round to it; at
        # least one chunk per sweep, so even a tiny budget makes progress.
        for after, until in ((start, LAST_ID), (ZERO_ID, start)):
            while after < until:
                ids = [row["workspace_id"] for row in db.fetch(statements.FLUSH_CANDIDATES, {"after": after, "until": until, "limit": FLUSH_CHUNK})]
                if ids:
                    result.written += _flush_chunk(ids)
                if len(ids) < FLUSH_CHUNK:
                    break
                after = ids[-1]
                if time.monotonic() >= deadline:
                    liveness.set_flush_cursor(after)
                    result.went_round = False
                    return result
        if start != ZERO_ID:
            liveness.set_flush_cursor(None)
    except (redis.RedisError, OSError) as err:
        count("RedisFailures")
        logger.error("steady beats could not be read from Redis", extra={"error": type(err).__name__})
        result.redis_ok = False
    return result


def _cursor(text: str | None) -> str:
    """The stored cursor as a canonical id; anything else is the start."""
    try:
        return str(uuid.UUID(text)) if text else ZERO_ID
    except ValueError:
        return ZERO_ID


def _flush_chunk(ids: list[str]) -> int:
    """One chunk: read what Redis holds for these workspaces, write the
    beats (guarded), re-arm or drop what Redis knows. Rows written."""
    known = liveness.read_for_flush(ids)
    if not known:
        return 0
    chunk = [{"id": k["id"], "token": k["token"], **_beat_columns(k["beat"])} for k in known]
    rows = db.fetch(statements.FLUSH_BEATS, {"chunk": json.dumps(chunk)})
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
    return rows[-1]["written"]


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
    flushed = flush(ttl)
    result.flushed, result.flush_ok = flushed.written, flushed.decidable
    if not flushed.redis_ok:
        count("SweepExpirySkipped")
        logger.error("liveness sweep expires nothing this run: the steady beats in Redis could not be read")
    elif not flushed.suspects_done:
        count("SweepExpirySkipped")
        logger.error(
            "liveness sweep expires nothing this run: the silent workspaces' beats could not all be checked in time",
            extra={"seconds": FLUSH_SECONDS},
        )
    if not flushed.went_round:
        count("FlushIncomplete")
        logger.warning("the write-behind did not reach the whole fleet this sweep; the next one resumes where it stopped")
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
        if result.flush_ok:
            decision = selfpreservation.decide(fleet, silent, begin["state"], begin["active_for"], rules)
        else:
            # The silent count may hold workspaces whose beats wait in Redis:
            # expire nobody, and neither enter nor leave self-preservation.
            decision = selfpreservation.Decision(0, begin["state"])
        if decision.expire:
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
