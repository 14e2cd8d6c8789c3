"""Every Postgres statement of the request path: one per operation.

DESIGN.md's budget is one round trip for a heartbeat and an update-card and
at most two for a register, so each operation is ONE statement (register:
one simple-query string, one implicit transaction) that checks the token,
reads the previous state, writes the change and records its event together.
Each carries the invariants it guards in its text.

Shared parameters:
- ``%(id)s``: the workspace id (validated UUID text).
- ``%(token_hash)s``: sha256 of the presented bearer token (bytea) or NULL.
- ``%(acks)s``: ids of events this container published since its last
  statement; they are marked published here, for free, instead of in a
  round trip of their own (see events.py).
"""

# The token gate of Phase 30.1 / C18, computed inside each statement. A
# workspace with a live (not revoked) token requires that token; one with
# none is grandfathered (legacy workspaces get theirs on next register)
# unless %(require_token)s (REQUIRE_WORKSPACE_TOKENS, the seed's step 30.5).
# Only the hash is ever compared: plaintext never reaches the database.
_AUTH_COLUMNS = """
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = %(id)s AND t.revoked_at IS NULL) AS has_live_token,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = %(id)s AND t.revoked_at IS NULL
                  AND t.token_hash = %(token_hash)s) AS token_ok"""

# Mark what this container already delivered to EventBridge as published.
_ACK = """
    acked AS (
        UPDATE structure_events SET publish_pending = false, published_at = now()
        WHERE id = ANY(%(acks)s::uuid[]) AND publish_pending
    ),
    -- last_used_at is kept for forensics as the seed did, but written at
    -- most every five minutes: a heartbeat must not rewrite a token row.
    touched AS (
        UPDATE workspace_auth_tokens SET last_used_at = now()
        WHERE workspace_id = %(id)s AND token_hash = %(token_hash)s AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - interval '5 minutes')
    )"""

# Register: C18 ownership check, #73-guarded upsert keeping a provisioner
# URL, first-token mint, WORKSPACE_ONLINE recorded: one round trip.
#
# The advisory lock (released at the end of the implicit transaction)
# serialises registrations of one id, and the WITH statement after it takes
# a fresh snapshot, so the second of two racing first registrations sees
# the first one's token and mints none: exactly one token per workspace.
REGISTER = (
    """
SELECT pg_advisory_xact_lock(hashtextextended('workspace-registry/register/' || %(id)s, 0));
WITH"""
    + _ACK
    + """,
    prior AS (
        SELECT status::text AS status, registration_secret_hash FROM workspaces WHERE id = %(id)s
    ),
    auth AS (SELECT"""
    + _AUTH_COLUMNS
    + """,
        -- Bootstrap hardening: a first registration must present the
        -- registration secret the platform stored for the workspace (or
        -- any first registration, with REQUIRE_REGISTRATION_SECRET).
        (SELECT registration_secret_hash FROM prior) IS NOT NULL OR %(require_secret)s AS secret_required,
        COALESCE((SELECT registration_secret_hash FROM prior) = %(secret_hash)s, false) AS secret_ok
    ),
    allowed AS (
        -- C18: the owner's token, or a first registration (with its secret
        -- when one is required). Nothing is written otherwise.
        SELECT auth.* FROM auth
        WHERE auth.token_ok OR (NOT auth.has_live_token AND (NOT auth.secret_required OR auth.secret_ok))
    ),
    upsert AS (
        INSERT INTO workspaces AS w (id, name, url, agent_card, status, last_heartbeat_at)
        SELECT %(id)s, %(id)s, %(url)s, %(card)s::jsonb, 'online', now()
        FROM allowed
        ON CONFLICT (id) DO UPDATE SET
            -- Keep a host-accessible URL the provisioner already set.
            url = CASE WHEN w.url LIKE 'http://127.0.0.1%%' THEN w.url ELSE EXCLUDED.url END,
            agent_card = EXCLUDED.agent_card,
            status = 'online',
            last_heartbeat_at = now(),
            updated_at = now(),
            -- The registration secret is one-time: the registration that
            -- mints the token consumes it.
            registration_secret_hash = CASE WHEN (SELECT has_live_token FROM auth)
                                            THEN w.registration_secret_hash END
        -- #73: a removed workspace is a tombstone; a late register from a
        -- container being torn down must not resurrect it.
        WHERE w.status IS DISTINCT FROM 'removed'
        RETURNING w.url
    ),
    minted AS (
        -- Phase 30.1: the first registration (or a legacy workspace's next
        -- one) gets a token; a re-registration keeps the one it has.
        INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix)
        SELECT %(id)s, %(new_token_hash)s, %(new_token_prefix)s
        FROM upsert, auth WHERE NOT auth.has_live_token
        RETURNING id
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'WORKSPACE_ONLINE', %(id)s,
               jsonb_build_object('url', upsert.url, 'agent_card', %(card)s::jsonb), true
        FROM upsert
        RETURNING id, event_type, payload, created_at
    )
SELECT auth.has_live_token, auth.token_ok, auth.secret_required, auth.secret_ok, (SELECT status FROM prior),
       upsert.url, EXISTS (SELECT 1 FROM minted),
       event.id, event.event_type, event.payload, event.created_at
FROM auth LEFT JOIN upsert ON true LEFT JOIN event ON true
"""
)

# Heartbeat: token gate, heartbeat columns, status transition and its event,
# previous task and queue-drain check: one round trip.
#
# %(rules)s is status.transition_table(): the transition for each status the
# row could have. The statement picks the row's entry, so the rules stay a
# pure Python function and the database still decides on the locked row.
HEARTBEAT = (
    """
WITH"""
    + _ACK
    + """,
    prior AS (
        -- FOR UPDATE: decide on the latest committed row, so a removal or
        -- another heartbeat racing this one is seen, not overwritten.
        SELECT w.id, w.status::text AS status, COALESCE(w.current_task, '') AS current_task,
               COALESCE(w.max_concurrent_tasks, 1) AS max_concurrent_tasks,"""
    + _AUTH_COLUMNS
    + """
        FROM workspaces w WHERE w.id = %(id)s
        FOR UPDATE OF w
    ),
    rule AS (
        SELECT r.next, r.event_type, r.payload
        FROM jsonb_to_recordset(%(rules)s::jsonb) AS r(prev text, next text, event_type text, payload jsonb)
        JOIN prior ON prior.status = r.prev
    ),
    beat AS (
        UPDATE workspaces w SET
            last_heartbeat_at = now(),
            last_error_rate = %(error_rate)s,
            last_sample_error = %(sample_error)s,
            active_tasks = %(active_tasks)s,
            uptime_seconds = %(uptime_seconds)s,
            current_task = %(current_task)s,
            -- #615: NULL (zero or negative reported) keeps the stored spend.
            monthly_spend = COALESCE(%(monthly_spend)s, w.monthly_spend),
            status = COALESCE((SELECT next FROM rule)::workspace_status, w.status),
            updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT %(require_token)s))
          -- #73: a late heartbeat never touches a tombstoned workspace.
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.status::text AS status
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT rule.event_type, %(id)s, rule.payload, true
        FROM rule, beat
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, p.current_task,
       (SELECT status FROM beat),
       event.id, event.event_type, event.payload, event.created_at,
       -- #1870: spare capacity and queued work -> ask a drainer to act.
       EXISTS (SELECT 1 FROM beat)
         AND %(active_tasks)s < p.max_concurrent_tasks
         AND EXISTS (SELECT 1 FROM a2a_queue q WHERE q.workspace_id = p.id AND q.status = 'queued')
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true
"""
)

# Update card: token gate, card, AGENT_CARD_UPDATED recorded: one round trip.
UPDATE_CARD = (
    """
WITH"""
    + _ACK
    + """,
    prior AS (
        SELECT w.id, w.status::text AS status,"""
    + _AUTH_COLUMNS
    + """
        FROM workspaces w WHERE w.id = %(id)s
        FOR UPDATE OF w
    ),
    card AS (
        UPDATE workspaces w SET agent_card = %(card)s::jsonb, updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT %(require_token)s))
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.id
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'AGENT_CARD_UPDATED', %(id)s, jsonb_build_object('agent_card', %(card)s::jsonb), true
        FROM card
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, EXISTS (SELECT 1 FROM card),
       event.id, event.event_type, event.payload, event.created_at
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true
"""
)

# Acknowledge delivered events when there is no request to piggyback on
# (the local server when idle, tests).
ACK_PUBLISHED = """
UPDATE structure_events SET publish_pending = false, published_at = now()
WHERE id = ANY(%(acks)s::uuid[]) AND publish_pending
"""

# Deregister: a clean shutdown says so now instead of three minutes late
# (Eureka cancel, Consul deregister, Cloud Map DeregisterInstance). Token
# gate as heartbeat; online/degraded/provisioning -> offline with its event;
# statuses the platform owns (paused, hibernated, failed) are kept.
DEREGISTER = (
    """
WITH"""
    + _ACK
    + """,
    prior AS (
        SELECT w.id, w.status::text AS status,"""
    + _AUTH_COLUMNS
    + """
        FROM workspaces w WHERE w.id = %(id)s
        FOR UPDATE OF w
    ),
    gone AS (
        UPDATE workspaces w SET
            status = CASE WHEN w.status IN ('online', 'degraded', 'provisioning')
                          THEN 'offline'::workspace_status ELSE w.status END,
            updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT %(require_token)s))
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.status::text AS status
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'WORKSPACE_OFFLINE', %(id)s,
               jsonb_build_object('reason', 'deregistered', 'previous_status', p.status), true
        FROM gone, prior p
        WHERE p.status IN ('online', 'degraded', 'provisioning')
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, (SELECT status FROM gone),
       event.id, event.event_type, event.payload, event.created_at
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true
"""
)

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
