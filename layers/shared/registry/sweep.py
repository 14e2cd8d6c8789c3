"""The liveness sweep: silent workspaces go offline, with self-preservation.

The seed learned that a workspace died from Redis key-expiry notifications
and a health sweep; a Lambda cannot hold a subscription, so a scheduled
sweep (every minute) does the work:

1. In one transaction: take the sweep lock (an overlapping sweep skips),
   count the fleet and the silent, decide with selfpreservation.decide(),
   expire up to the allowed number oldest-first and record WORKSPACE_OFFLINE
   for each, record REGISTRY_SELF_PRESERVATION when entering or leaving.
2. Remove the expired workspaces' Redis keys (one pipeline).
3. Publish what it recorded, then run the relay for anything left pending.

Liveness is decided by Postgres' last_heartbeat_at, written by every
heartbeat in the same statement. Redis' ws:{id} is a cache for readers: a
flushed Redis (failover) is rebuilt by the next heartbeats and never makes
the sweep expire anyone; a Redis that kept a key cannot keep a dead
workspace online either, since the sweep does not read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from registry import db, events, liveness, relay, selfpreservation, statements
from registry.observability import count, logger, metrics
from registry.settings import get_settings

# Up to this many online+degraded rows the fleet is counted exactly; above,
# the planner's estimate is used (bounded cost at any fleet size).
EXACT_FLEET_LIMIT = 10_000


@dataclass
class SweepResult:
    skipped: bool = False
    fleet: int = 0
    silent: int = 0
    expired: list[str] = field(default_factory=list)
    self_preservation: str = selfpreservation.NORMAL
    relay: relay.RelayResult | None = None


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

    count("WorkspacesExpired", len(result.expired))
    metrics.add_metric(name="SilentWorkspaces", unit="Count", value=silent)
    metrics.add_metric(name="SelfPreservationActive", unit="Count", value=int(result.self_preservation == selfpreservation.ACTIVE))
    logger.info(
        "liveness sweep done",
        extra={"fleet": fleet, "silent": silent, "expired": len(result.expired), "self_preservation": result.self_preservation},
    )
    return result
