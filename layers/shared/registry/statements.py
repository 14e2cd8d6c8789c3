"""Every Postgres statement the registry sends: one per operation.

DESIGN.md's budget is one round trip for a heartbeat and an update-card and
at most two for a register, so each request operation is ONE statement that
checks the token, reads the previous state, writes the change and records
its event together. The sweep and the relay, off the request path, run a
few statements in one transaction.
"""

# Each request operation is one call of a PL/pgSQL function whose body is
# the operation's single statement: migrations/0005_request_functions.sql
# holds them, with the invariants they guard (the token gate of Phase
# 30.1 / C18, the #73 tombstone guard, the provisioner-URL rule, exactly one
# first token, the transition picked on the locked row). As functions their
# plans are cached per session (the text was re-planned on every call: two
# thirds of a heartbeat's database time), and a call is still one round trip.
#
# %(acks)s are ids of events this container published since its last
# statement; the function marks them published, for free, instead of a
# round trip of their own (see events.py). Only hashes of tokens and
# secrets are ever sent.

REGISTER = """
SELECT * FROM registry_register_v1(
    %(id)s, %(url)s, %(card)s, %(token_hash)s, %(new_token_hash)s, %(new_token_prefix)s,
    %(secret_hash)s, %(require_secret)s, %(acks)s::uuid[])
"""

HEARTBEAT = """
SELECT * FROM registry_heartbeat_v1(
    %(id)s, %(token_hash)s, %(require_token)s, %(rules)s, %(error_rate)s, %(sample_error)s,
    %(active_tasks)s, %(uptime_seconds)s, %(current_task)s, %(monthly_spend)s, %(acks)s::uuid[])
"""

UPDATE_CARD = """
SELECT * FROM registry_update_card_v1(%(id)s, %(token_hash)s, %(require_token)s, %(card)s, %(acks)s::uuid[])
"""

DEREGISTER = """
SELECT * FROM registry_deregister_v1(%(id)s, %(token_hash)s, %(require_token)s, %(acks)s::uuid[])
"""

# Acknowledge delivered events when there is no request to piggyback on
# (the local server when idle, tests).
ACK_PUBLISHED = """
UPDATE structure_events SET publish_pending = false, published_at = now()
WHERE id = ANY(%(acks)s::uuid[]) AND publish_pending
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
SELECT lock.locked, st.self_preservation,
       COALESCE(extract(epoch FROM now() - st.self_preservation_since), 0)::float8,
       fleet.n, silent.n
FROM lock, fleet, silent, registry_sweep_state st
"""
)

# Expire up to %(limit)s silent workspaces, oldest heartbeat first, and
# record WORKSPACE_OFFLINE for each. SKIP LOCKED passes over rows a
# heartbeat holds right now (that workspace is alive). FOR UPDATE re-checks
# the WHERE on the newest version of each row it locks (READ COMMITTED), so
# a heartbeat that committed after the sweep's snapshot wins, and the lock
# keeps it so until the UPDATE. No second re-check in the UPDATE: with the
# planner's stale idea of how many rows are silent, it turned the join into
# a loop over every silent row per victim (11.6 s at 1 M workspaces).
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
        UPDATE workspaces w SET status = 'offline', updated_at = now()
        FROM victims v
        WHERE w.id = v.id
        RETURNING w.id, v.status, v.last_heartbeat_at
    )
INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
SELECT 'WORKSPACE_OFFLINE', e.id,
       jsonb_build_object('reason', 'liveness_expired', 'previous_status', e.status,
                          'last_heartbeat_at', e.last_heartbeat_at), true
FROM expired e
RETURNING id, event_type, workspace_id::text, payload, created_at
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

RECORD_EVENT = """
INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
VALUES (%(event_type)s, %(workspace_id)s, %(payload)s::jsonb, true)
RETURNING id, event_type, workspace_id::text, payload, created_at
"""

# --- Event relay ---------------------------------------------------------

# The oldest pending events, locked so a concurrent relay takes others.
RELAY_CLAIM = """
SELECT id, event_type, workspace_id::text, payload, created_at FROM structure_events
WHERE publish_pending AND created_at < now() - %(grace)s * interval '1 second'
ORDER BY created_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

OLDEST_PENDING_AGE = """
SELECT COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8, count(*)
FROM structure_events WHERE publish_pending
"""

# An event too large for PutEvents can never be delivered: it leaves the
# queue (published_at stays NULL, so it is findable) instead of blocking it.
DROP_UNPUBLISHABLE = """
UPDATE structure_events SET publish_pending = false
WHERE id = ANY(%(ids)s::uuid[]) AND publish_pending
"""
