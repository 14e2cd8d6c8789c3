"""Every Postgres statement the registry sends, found by its operation's
name, and the row each request operation answers with.

DESIGN.md's budget is one round trip for a heartbeat and an update-card and
at most two for a register, so each request operation is ONE call of a
PL/pgSQL function that decides the outcome on the locked row, writes the
change and records its event together. The functions live in
``registry/sql/<operation>.sql`` (applied by registry.migrate, versioned by
name: see its docstring); the rule each one guards is written there. As
functions their plans are cached per session, unlike PREPARE without pinning
an RDS Proxy session, and a call is still one round trip.

Python reads every row by column name into the dataclass of its operation:
a column added, removed or renamed in SQL fails loudly here instead of
shifting a positional tuple (two neighbouring booleans swapped would be a
silent auth bug). Only hashes of tokens and secrets are ever sent.

The sweep and the relay, off the request path, run the plain statements at
the end of this module inside one transaction each.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")


def read(cls: type[R], row: dict[str, Any]) -> R:
    """A row as its dataclass; every column must be a field and vice versa."""
    expected = {f.name for f in fields(cls)}
    if set(row) != expected:
        raise RuntimeError(f"{cls.__name__}: the statement answered {sorted(row)}, expected {sorted(expected)}")
    return cls(**row)


@dataclass(frozen=True)
class Recorded:
    """The event a request function recorded, if any (sql/event.sql)."""

    revision: int | None
    event_id: Any | None
    event_type: str | None
    event_payload: dict | None
    occurred_at: datetime | None


# --- Request operations (registry/sql/) ------------------------------------

# outcome: ok | unauthorized | secret_required | secret_invalid | removed
REGISTER = """
SELECT * FROM registry_register_v2(
    %(id)s, %(url)s, %(card)s, %(token_hash)s, %(new_token_hash)s, %(new_token_prefix)s,
    %(secret_hash)s, %(require_secret)s, %(recovery_seconds)s)
"""


@dataclass(frozen=True)
class Registered(Recorded):
    outcome: str
    prior_status: str | None
    stored_url: str | None
    minted: str | None  # 'first', 'reissued' or None
    current_task: str | None
    active_tasks: int | None


# outcome: ok | not_registered | unauthorized | removed
HEARTBEAT = """
SELECT * FROM registry_heartbeat_v2(
    %(id)s, %(token_hash)s, %(require_token)s, %(rules)s, %(error_rate)s, %(sample_error)s,
    %(active_tasks)s, %(uptime_seconds)s, %(current_task)s, %(monthly_spend)s)
"""


@dataclass(frozen=True)
class Heartbeat(Recorded):
    outcome: str
    authorized_by: str | None  # 'token' or 'grandfathered' when allowed
    prior_status: str | None
    new_status: str | None
    previous_task: str | None
    drain: bool | None


UPDATE_CARD = """
SELECT * FROM registry_update_card_v2(%(id)s, %(token_hash)s, %(require_token)s, %(card)s)
"""


@dataclass(frozen=True)
class CardUpdated(Recorded):
    outcome: str
    authorized_by: str | None
    prior_status: str | None


DEREGISTER = """
SELECT * FROM registry_deregister_v2(%(id)s, %(token_hash)s, %(require_token)s)
"""


@dataclass(frozen=True)
class Deregistered(Recorded):
    outcome: str
    authorized_by: str | None
    prior_status: str | None
    new_status: str | None


# A request marks what it published itself, in one more round trip taken
# only when PutEvents accepted something: without it an idle container's
# events would be republished by the relay (a duplicate in the normal case).
MARK_PUBLISHED = """
UPDATE structure_events SET publish_pending = false, published_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND publish_pending
"""

# --- Liveness sweep (runs in one transaction, off the request path) -------

# Who is silent: online/degraded whose last heartbeat is older than the TTL
# (or that never heartbeated). Postgres decides, not Redis: every heartbeat
# writes last_heartbeat_at in its statement, so a flushed cache can neither
# keep a dead workspace online nor take a live one offline.
_SILENT = """
    status IN ('online', 'degraded')
    AND (last_heartbeat_at IS NULL OR last_heartbeat_at < now() - %(ttl)s * interval '1 second')"""

# Try the sweep lock (an overlapping sweep skips instead of waiting), read
# the self-preservation state and count fleet and silent, each count bounded
# so the cost follows the silent workspaces (idx_workspaces_liveness), not
# the fleet: silent rows are counted only as far as the decision needs (the
# threshold's share of the fleet, or the per-sweep cap). Beyond
# %(exact_fleet)s rows the fleet size is the planner's estimate for the
# partial index, kept fresh by autovacuum: precise enough for a percentage.
SWEEP_BEGIN = (
    """
WITH lock AS (
        SELECT pg_try_advisory_xact_lock(hashtextextended('workspace-registry/liveness-sweep', 0)) AS locked
    ),
    exact AS (
        SELECT count(*) AS n FROM (
            SELECT 1 FROM workspaces WHERE status IN ('online', 'degraded') LIMIT %(exact_fleet)s) f
    ),
    fleet AS (
        SELECT CASE WHEN exact.n < %(exact_fleet)s THEN exact.n
                    ELSE GREATEST(exact.n, (SELECT reltuples::bigint FROM pg_class
                                            WHERE oid = 'idx_workspaces_liveness'::regclass)) END AS n
        FROM exact
    ),
    silent AS (
        SELECT count(*) AS n FROM (
            SELECT 1 FROM workspaces WHERE"""
    + _SILENT
    + """
            LIMIT (SELECT ceil(fleet.n * %(threshold_percent)s / 100.0)::bigint + %(min_bound)s FROM fleet)) s
    )
SELECT lock.locked, st.self_preservation AS state,
       COALESCE(extract(epoch FROM now() - st.self_preservation_since), 0)::float8 AS active_for,
       fleet.n AS fleet, silent.n AS silent
FROM lock, fleet, silent, registry_sweep_state st
"""
)

# Expire up to %(limit)s silent workspaces, oldest heartbeat first, and
# record WORKSPACE_OFFLINE for each with its next revision. SKIP LOCKED
# passes over rows a heartbeat holds right now (that workspace is alive).
# FOR UPDATE re-checks the WHERE on the newest version of each row it locks
# (READ COMMITTED), so a heartbeat that committed after the sweep's snapshot
# wins, and the lock keeps it so until the UPDATE. No second re-check in the
# UPDATE: with the planner's stale idea of how many rows are silent, it
# turned the join into a loop over every silent row per victim (11.6 s at
# 1 M workspaces). LATERAL calls the event function once per row.
SWEEP_EXPIRE = (
    """
WITH victims AS (
        SELECT id, status::text AS status, last_heartbeat_at FROM workspaces
        WHERE"""
    + _SILENT
    + """
        ORDER BY last_heartbeat_at NULLS FIRST
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ),
    expired AS (
        UPDATE workspaces w SET status = 'offline', revision = w.revision + 1, updated_at = now()
        FROM victims v
        WHERE w.id = v.id
        RETURNING w.id, v.status, v.last_heartbeat_at, w.revision
    )
SELECT ev.id AS event_id, ev.event_type, ev.workspace_id::text AS workspace_id, ev.payload AS event_payload,
       ev.created_at AS occurred_at, ev.sequence AS revision
FROM expired e
CROSS JOIN LATERAL registry_record_event_v2(
    e.id, 'WORKSPACE_OFFLINE',
    jsonb_build_object('reason', 'liveness_expired', 'previous_status', e.status, 'last_heartbeat_at', e.last_heartbeat_at),
    e.revision) ev
"""
)

SWEEP_SET_STATE = """
UPDATE registry_sweep_state SET
    self_preservation = %(state)s,
    self_preservation_since = CASE
        WHEN %(state)s = 'active' AND self_preservation <> 'active' THEN now()
        WHEN %(state)s = 'normal' THEN NULL
        ELSE self_preservation_since END,
    last_sweep_at = now()
"""

# A registry-wide event (no workspace, so no sequence).
RECORD_EVENT = """
SELECT ev.id AS event_id, ev.event_type, ev.workspace_id::text AS workspace_id, ev.payload AS event_payload,
       ev.created_at AS occurred_at, ev.sequence AS revision
FROM registry_record_event_v2(NULL, %(event_type)s, %(payload)s::jsonb, NULL) ev
"""

# --- Event relay ---------------------------------------------------------

# The oldest pending events, locked so a concurrent relay takes others.
RELAY_CLAIM = """
SELECT id AS event_id, event_type, workspace_id::text AS workspace_id, payload AS event_payload,
       created_at AS occurred_at, sequence AS revision
FROM structure_events
WHERE publish_pending AND created_at < now() - %(grace)s * interval '1 second'
ORDER BY created_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

OLDEST_PENDING_AGE = """
SELECT COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age, count(*) AS pending
FROM structure_events WHERE publish_pending
"""

# An event too large for PutEvents can never be delivered: it leaves the
# queue (published_at stays NULL, so it is findable) instead of blocking it.
# Requests refuse what could produce one (registry/limits.py); this is the
# last line for rows written by anything else.
DROP_UNPUBLISHABLE = """
UPDATE structure_events SET publish_pending = false
WHERE id = ANY(%(ids)s::uuid[]) AND publish_pending
"""

# --- Write-behind of steady heartbeats (the sweep, before it decides) -----

# The workspaces whose beats may be waiting in Redis (a steady heartbeat
# keeps a workspace online or degraded), a chunk at a time in id order.
FLUSH_CANDIDATES = """
SELECT id::text AS workspace_id FROM workspaces
WHERE status IN ('online', 'degraded') AND id > %(after)s::uuid
ORDER BY id
LIMIT %(limit)s
"""

# A chunk of workspaces as Redis knows them (liveness.read_for_flush): their
# steady beats are written as the Postgres path would have written them, and
# what the steady path checks is verified against the record. The write is
# guarded like the heartbeat: never a removed row (#73), never a beat older
# than what is stored (a Postgres-path heartbeat that came later wins); rows
# in id order, so two writers lock them in the same order. The answer says,
# for each workspace whose token Redis holds, whether that token is still
# live and which status the row has: the sweep re-arms what still holds and
# drops the rest, so a steady workspace costs Postgres nothing but this, and
# a change made directly in Postgres reaches Redis within a sweep.
FLUSH_BEATS = """
WITH chunk AS (
        SELECT * FROM jsonb_to_recordset(%(chunk)s::jsonb)
          AS r(id uuid, at float8, error_rate float8, sample_error text, uptime_seconds integer,
               monthly_spend bigint, token text)
    ),
    written AS (
        UPDATE workspaces w SET
            last_heartbeat_at = to_timestamp(b.at),
            last_error_rate = b.error_rate,
            last_sample_error = b.sample_error,
            uptime_seconds = b.uptime_seconds,
            -- #615: NULL (zero or negative reported) keeps the stored spend.
            monthly_spend = COALESCE(b.monthly_spend, w.monthly_spend),
            updated_at = now()
        FROM (SELECT * FROM chunk WHERE at IS NOT NULL ORDER BY id) b
        WHERE w.id = b.id
          AND w.status IS DISTINCT FROM 'removed'
          AND (w.last_heartbeat_at IS NULL OR w.last_heartbeat_at < to_timestamp(b.at))
        RETURNING w.id
    )
SELECT c.id::text AS workspace_id, w.status::text AS status,
       EXISTS (SELECT 1 FROM workspace_auth_tokens t
               WHERE t.workspace_id = c.id AND t.token_hash = decode(c.token, 'hex') AND t.revoked_at IS NULL) AS token_live,
       (SELECT count(*) FROM written) AS written
FROM chunk c JOIN workspaces w ON w.id = c.id
WHERE c.token IS NOT NULL
UNION ALL
SELECT NULL, NULL, NULL, (SELECT count(*) FROM written)
"""

# #1870 for steady workspaces: their beats never reach Postgres one by one,
# so the sweep asks a drainer to act for every workspace with queued work
# and spare capacity (the Postgres path still asks on the heartbeat itself).
# Driven by the queue's partial index, bounded per run.
DRAIN_CANDIDATES = """
SELECT w.id::text AS workspace_id, COALESCE(w.active_tasks, 0) AS active_tasks
FROM (SELECT DISTINCT workspace_id FROM a2a_queue WHERE status = 'queued') q
JOIN workspaces w ON w.id = q.workspace_id
WHERE w.status IN ('online', 'degraded')
  AND COALESCE(w.active_tasks, 0) < COALESCE(w.max_concurrent_tasks, 1)
ORDER BY w.id
LIMIT %(limit)s
"""
