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


# --- The read side (registry/sql/, issue #13) -------------------------------

# outcome: ok | unauthorized | removed (the caller) | not_found | forbidden
DISCOVER = """
SELECT * FROM registry_discover_v1(%(caller)s, %(target)s, %(token_hash)s, %(require_token)s)
"""


@dataclass(frozen=True)
class Discovered:
    outcome: str
    authorized_by: str | None
    caller_runtime: str | None
    # The workspace answered for: the target, or where forwarded_to leads.
    target_id: str | None
    target_name: str | None
    target_runtime: str | None
    target_url: str | None
    target_status: str | None


# outcome: ok | not_registered | unauthorized | removed
PEERS = """
SELECT * FROM registry_peers_v1(%(id)s, %(token_hash)s, %(require_token)s)
"""


@dataclass(frozen=True)
class Peers:
    outcome: str
    authorized_by: str | None
    peers: list[dict[str, Any]] | None


# outcome: ok | unauthorized | removed (the caller)
CHECK_ACCESS = """
SELECT * FROM registry_check_access_v1(%(caller)s, %(target)s, %(token_hash)s, %(require_token)s)
"""


@dataclass(frozen=True)
class AccessChecked:
    outcome: str
    authorized_by: str | None
    allowed: bool | None


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
# keeps a workspace online or degraded), a chunk at a time in id order,
# from a cursor up to a bound (a sweep that resumes mid-fleet wraps round).
FLUSH_CANDIDATES = """
SELECT id::text AS workspace_id FROM workspaces
WHERE status IN ('online', 'degraded') AND id > %(after)s::uuid AND id <= %(until)s::uuid
ORDER BY id
LIMIT %(limit)s
"""

# The workspaces Postgres holds as silent (what SWEEP_BEGIN counts and
# SWEEP_EXPIRE may take), stalest first, a chunk at a time after a cursor
# on (last_heartbeat_at, id): the sweep writes their waiting beats before
# it decides, whatever part of the fleet the rest of the write-behind
# reaches this time. The liveness index starts at the cursor (the planner
# takes the row comparison's first column as its lower bound). A row
# without any heartbeat has no steady beat either (what the steady path
# checks is written only by a Postgres call, which sets the column).
FLUSH_SUSPECTS = """
SELECT id::text AS workspace_id, last_heartbeat_at AS at FROM workspaces
WHERE status IN ('online', 'degraded')
  AND last_heartbeat_at < now() - %(ttl)s * interval '1 second'
  AND (last_heartbeat_at, id) > (%(after_at)s, %(after_id)s::uuid)
ORDER BY last_heartbeat_at, id
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

# --- Operators' fleet view (registry/fleet.py, GET /admin/...) -------------
#
# Plain SELECTs sent as text, not plan-cached functions: they are rare (an
# operator, a dashboard polling every second or two), and psycopg2 sends
# the filter values as literals, so the planner sees the actual filters,
# folds the ones left out (`NULL IS NULL OR ...`) away and picks the index
# for each request; a function's cached generic plan could not. Each route
# is one statement; none reads a token hash or a registration secret.
#
# Timestamps inside JSON built here are written as UTC ISO 8601 with 'Z'
# (the session's time zone must not leak into the answer).

_ISO = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

# One page of the workspace list, newest registration first. The order is
# (created_at, id) descending, which never changes for a row, so a cursor
# (the last row's pair) resumes exactly, whatever changed meanwhile.
#
# Which rows, in one statement. The best way depends on how many workspaces
# match, which no plan knows in advance: walking the list in order (one walk
# per status over idx_registry_fleet_order, merged) is cheapest when matches
# are common and ruinous when they are rare (a search for one card among a
# million walks the million); the search index (idx_registry_fleet_terms,
# or idx_registry_fleet_changed) and a sort are cheap when matches are rare
# and ruinous when they are common (sorting a million). So:
#   walked: each status is walked in order, testing the search and
#           changed-since filters on the way, until it found %(limit)s
#           matches or read %(scan)s rows (row number %(scan)s is kept as a
#           marker that the walk was cut there);
#   complete: that walk is exact when every status either ran out of rows
#           or found %(limit)s matches (a row it did not reach comes after
#           %(limit)s matches of its own);
#   page:   then the walk's matches; otherwise (matches are rarer than
#           %(limit)s in %(scan)s) the filters' indexes find them all for a
#           sort. Each half is gated on `complete` by a one-time filter, so
#           only one of them runs (EXPLAIN shows the other "never executed").
# A page reads about (statuses x limit) rows walking when matches are
# common, at most (statuses x scan) when not, then about as many as match. Without a filter to test, scan is the page size and the walk is
# exact. The values arrive as literals (psycopg2), so the planner folds away
# the filters not asked for and plans the second half for the actual search.
# List items carry the card's name, version and skill ids, not the card: the
# detail route has it, and a page stays far below Lambda's 6 MB answer limit.
_ORDERED_AFTER = "(%(after_id)s::uuid IS NULL OR (f.created_at, f.id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))"
_FILTERS = """(NOT %(searching)s OR f.terms @@ registry_fleet_query_v1(%(q)s::text, %(skill)s::text, %(tag)s::text))
               AND (%(updated_since)s::timestamptz IS NULL OR f.changed_at >= %(updated_since)s::timestamptz)"""
ADMIN_WORKSPACES = f"""
WITH walked AS MATERIALIZED (
        SELECT s.status, x.id, x.created_at, x.changed_at, x.hit, x.n
        FROM unnest(%(statuses)s::workspace_status[]) AS s(status)
        CROSS JOIN LATERAL (
            SELECT y.id, y.created_at, y.changed_at, y.hit, y.n FROM (
                SELECT f.id, f.created_at, f.changed_at, {_FILTERS} AS hit,
                       row_number() OVER (ORDER BY f.created_at DESC, f.id DESC) AS n
                FROM registry_fleet f
                WHERE f.status = s.status AND {_ORDERED_AFTER}
                ORDER BY f.created_at DESC, f.id DESC
                LIMIT %(scan)s
            ) y
            WHERE y.hit OR y.n = %(scan)s
            LIMIT %(limit)s + 1
        ) x
    ),
    complete AS (
        SELECT COALESCE(bool_and(w.hits >= %(limit)s OR NOT w.cut), true) AS yes
        FROM (SELECT count(*) FILTER (WHERE hit) AS hits, bool_or(n = %(scan)s) AS cut FROM walked GROUP BY status) w
    ),
    page AS (
        (SELECT k.id, k.created_at, k.changed_at FROM walked k
         WHERE k.hit AND (SELECT yes FROM complete)
         ORDER BY k.created_at DESC, k.id DESC
         LIMIT %(limit)s)
        UNION ALL
        (SELECT f.id, f.created_at, f.changed_at FROM registry_fleet f
         WHERE NOT (SELECT yes FROM complete)
           AND f.status = ANY(%(statuses)s::workspace_status[]) AND {_ORDERED_AFTER}
           AND {_FILTERS}
         ORDER BY f.created_at DESC, f.id DESC
         LIMIT %(limit)s)
    )
SELECT w.id::text AS id, w.name, w.role, w.tier, w.status::text AS status, w.url, w.parent_id::text AS parent_id,
       CASE WHEN jsonb_typeof(w.agent_card -> 'name') = 'string' THEN left(w.agent_card ->> 'name', 256) END AS card_name,
       CASE WHEN jsonb_typeof(w.agent_card -> 'version') = 'string' THEN left(w.agent_card ->> 'version', 64) END AS card_version,
       ARRAY(SELECT left(s #>> '{{}}', 128)
             FROM jsonb_path_query(COALESCE(w.agent_card, 'null'), 'lax $.skills[*].id ? (@.type() == "string")') s
             LIMIT 20) AS skills,
       w.last_heartbeat_at, w.last_error_rate, left(w.last_sample_error, 4096) AS last_sample_error,
       w.active_tasks, w.max_concurrent_tasks, left(w.current_task, 4096) AS current_task, w.uptime_seconds,
       w.monthly_spend, w.budget_limit, w.revision, p.created_at, w.updated_at, p.changed_at
FROM page p
JOIN workspaces w ON w.id = p.id
ORDER BY p.created_at DESC, p.id DESC
"""

# The change feed: events after a cursor (feed_xid, created_at, id) in that
# order, only from transactions older than the oldest one still running
# (migration 0010 says why no late commit can be skipped). One index walk
# from the cursor: idx_structure_events_feed, or the workspace's or the
# type's index when filtered. A page stops at %(limit)s rows or once the
# payloads passed %(page_bytes)s bytes (a card in every WORKSPACE_ONLINE
# could otherwise outgrow Lambda's answer), always holding at least one.
# The tail is the same walk backwards from the newest visible event (the
# budget keeps the newest), answered oldest first.
_FEED = """
WITH page AS (
        SELECT e.id, e.event_type, e.workspace_id, e.sequence, e.created_at, e.payload, e.publish_pending,
               e.published_at, e.feed_xid, COALESCE(octet_length(e.payload::text), 0) AS size
        FROM structure_events e
        WHERE {after}e.feed_xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
          AND (%(workspace_id)s::uuid IS NULL OR e.workspace_id = %(workspace_id)s::uuid)
          AND (%(event_type)s::text IS NULL OR e.event_type = %(event_type)s::text)
        ORDER BY e.feed_xid {way}, e.created_at {way}, e.id {way}
        LIMIT %(limit)s
    ),
    sized AS (
        SELECT page.*, count(*) OVER () AS fetched,
               sum(size) OVER (ORDER BY feed_xid {way}, created_at {way}, id {way} ROWS UNBOUNDED PRECEDING) - size AS before
        FROM page
    )
SELECT id::text AS event_id, event_type, workspace_id::text AS workspace_id, sequence, created_at, payload,
       publish_pending AS pending, published_at, feed_xid::text AS feed_xid, fetched
FROM sized
WHERE sized.before < %(page_bytes)s
-- qualified: the bare names are the answer's text columns (xid 1000 < 999)
ORDER BY sized.feed_xid, sized.created_at, sized.id
"""
ADMIN_EVENTS = _FEED.format(
    after="(e.feed_xid, e.created_at, e.id) > (%(after_xid)s::xid8, %(after_created_at)s::timestamptz, %(after_id)s::uuid)\n          AND ",
    way="ASC",
)
ADMIN_EVENTS_TAIL = _FEED.format(after="", way="DESC")

# One workspace: the row (never its token hashes or registration secret:
# only whether a secret is set, and each live token's display prefix),
# and its latest events newest first, from idx_structure_events_workspace_feed.
ADMIN_WORKSPACE = (
    """
SELECT w.id::text AS id, w.name, w.role, w.tier, w.status::text AS status, w.url, w.parent_id::text AS parent_id,
       w.forwarded_to::text AS forwarded_to,
       CASE WHEN octet_length(w.agent_card::text) <= %(max_card_bytes)s THEN w.agent_card END AS agent_card,
       octet_length(w.agent_card::text) AS agent_card_bytes,
       w.last_heartbeat_at, w.last_error_rate, w.last_sample_error, w.active_tasks, w.max_concurrent_tasks,
       w.current_task, w.uptime_seconds, w.monthly_spend, w.budget_limit, w.revision, w.created_at, w.updated_at,
       w.registration_secret_hash IS NOT NULL AS registration_secret_set,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'prefix', t.prefix, 'created_at', """
    + _ISO.format("t.created_at")
    + """, 'last_used_at', """
    + _ISO.format("t.last_used_at")
    + """, 'confirmed', t.confirmed_at IS NOT NULL) ORDER BY t.created_at DESC), '[]'::jsonb)
        FROM (SELECT * FROM workspace_auth_tokens t WHERE t.workspace_id = w.id AND t.revoked_at IS NULL
              ORDER BY t.created_at DESC LIMIT 10) t) AS live_tokens,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'event_id', e.id, 'event_type', e.event_type, 'sequence', e.sequence,
                    'occurred_at', """
    + _ISO.format("e.created_at")
    + """, 'payload', CASE WHEN e.before < %(page_bytes)s THEN e.payload END,
                    'pending', e.publish_pending) ORDER BY e.feed_xid DESC, e.created_at DESC, e.id DESC), '[]'::jsonb)
        FROM (SELECT r.*, sum(COALESCE(octet_length(r.payload::text), 0))
                          OVER (ORDER BY r.feed_xid DESC, r.created_at DESC, r.id DESC ROWS UNBOUNDED PRECEDING)
                          - COALESCE(octet_length(r.payload::text), 0) AS before
              FROM (SELECT * FROM structure_events e WHERE e.workspace_id = w.id
                    ORDER BY e.feed_xid DESC, e.created_at DESC, e.id DESC LIMIT %(events)s) r) e) AS recent_events
FROM workspaces w
WHERE w.id = %(id)s::uuid
"""
)

# The fleet at a glance, bounded at any size: each status is counted
# exactly up to %(exact)s rows (idx_registry_fleet_order), beyond that the
# planner's statistics give an estimate (as the sweep counts its fleet);
# pending events likewise (idx_structure_events_pending), the oldest one's
# age from the first entry of that index; the head of the change feed (the
# cursor a follower starts from) from the last visible entry of
# idx_structure_events_feed.
ADMIN_SUMMARY = """
SELECT (SELECT jsonb_object_agg(s.status, c.n)
        FROM unnest(enum_range(NULL::workspace_status)) AS s(status)
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
            SELECT 1 FROM registry_fleet f WHERE f.status = s.status LIMIT %(exact)s) x) c) AS counts,
       (SELECT jsonb_object_agg(m.v, round(m.f * GREATEST(cl.reltuples, 0)))
        FROM pg_class cl, pg_stats ps,
             unnest(ps.most_common_vals::text::text[], ps.most_common_freqs) AS m(v, f)
        WHERE cl.oid = 'registry_fleet'::regclass
          AND ps.schemaname = current_schema() AND ps.tablename = 'registry_fleet' AND ps.attname = 'status') AS estimates,
       st.self_preservation, st.self_preservation_since, st.last_sweep_at,
       (SELECT count(*) FROM (SELECT 1 FROM structure_events WHERE publish_pending LIMIT %(exact)s) p) AS pending,
       (SELECT min(created_at) FROM structure_events WHERE publish_pending) AS oldest_pending_at,
       head.feed_xid::text AS head_xid, head.created_at AS head_created_at, head.id::text AS head_id,
       now() AS now
FROM registry_sweep_state st
LEFT JOIN LATERAL (
    SELECT e.feed_xid, e.created_at, e.id FROM structure_events e
    WHERE e.feed_xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
    ORDER BY e.feed_xid DESC, e.created_at DESC, e.id DESC
    LIMIT 1
) head ON true
"""
