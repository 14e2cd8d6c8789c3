-- The four request statements as PL/pgSQL functions, one per operation.
--
-- Why functions: each statement is a large CTE, and sent as text it was
-- parsed and planned on every call: 0.40-0.47 ms of a ~0.6 ms heartbeat
-- (make bench, "statement replayed alone"). PL/pgSQL keeps each function's
-- plan for the session, and unlike PREPARE it does not pin the session in
-- RDS Proxy. A call is still one round trip and one implicit transaction.
--
-- Each function is versioned (_v1): a change ships as a new function in a
-- new migration, so code of the previous release keeps working during a
-- deploy. The bodies are the statements the Python code used to send, with
-- the same invariants written in them:
--   - the token gate (Phase 30.1 / C18) is computed inside, on the hash only;
--   - #73: a removed workspace is never touched;
--   - acks of delivered events ride along (see registry/events.py).

-- Register: C18 ownership check (and the registration secret when one is
-- required), #73-guarded upsert keeping a provisioner URL, first-token mint,
-- WORKSPACE_ONLINE recorded. The advisory lock (held to the end of the
-- transaction) serialises registrations of one id, and the statement after
-- it takes a fresh snapshot (a VOLATILE function's statements each do), so
-- the second of two racing first registrations sees the first one's token
-- and mints none: exactly one token per workspace.
CREATE OR REPLACE FUNCTION registry_register_v1(p_id uuid, p_url text, p_card jsonb, p_token_hash bytea, p_new_token_hash bytea, p_new_token_prefix text, p_secret_hash bytea, p_require_secret boolean, p_acks uuid[])
RETURNS TABLE (o_has_live_token boolean, o_token_ok boolean, o_secret_required boolean, o_secret_ok boolean, o_prior_status text, o_stored_url text, o_minted boolean, o_event_id uuid, o_event_type text, o_event_payload jsonb, o_event_created_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('workspace-registry/register/' || p_id::text, 0));
    RETURN QUERY
WITH
    acked AS (
        UPDATE structure_events SET publish_pending = false, published_at = now()
        WHERE id = ANY(p_acks) AND publish_pending
    ),
    -- last_used_at is kept for forensics as the seed did, but written at
    -- most every five minutes: a heartbeat must not rewrite a token row.
    touched AS (
        UPDATE workspace_auth_tokens SET last_used_at = now()
        WHERE workspace_id = p_id AND token_hash = p_token_hash AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - interval '5 minutes')
    ),
    prior AS (
        SELECT status::text AS status, registration_secret_hash FROM workspaces WHERE id = p_id
    ),
    auth AS (SELECT
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL) AS has_live_token,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL
                  AND t.token_hash = p_token_hash) AS token_ok,
        -- Bootstrap hardening: a first registration must present the
        -- registration secret the platform stored for the workspace (or
        -- any first registration, with REQUIRE_REGISTRATION_SECRET).
        (SELECT registration_secret_hash FROM prior) IS NOT NULL OR p_require_secret AS secret_required,
        COALESCE((SELECT registration_secret_hash FROM prior) = p_secret_hash, false) AS secret_ok
    ),
    allowed AS (
        -- C18: the owner's token, or a first registration (with its secret
        -- when one is required). Nothing is written otherwise.
        SELECT auth.* FROM auth
        WHERE auth.token_ok OR (NOT auth.has_live_token AND (NOT auth.secret_required OR auth.secret_ok))
    ),
    upsert AS (
        INSERT INTO workspaces AS w (id, name, url, agent_card, status, last_heartbeat_at)
        SELECT p_id, p_id::text, p_url, p_card, 'online', now()
        FROM allowed
        ON CONFLICT (id) DO UPDATE SET
            -- Keep a host-accessible URL the provisioner already set.
            url = CASE WHEN w.url LIKE 'http://127.0.0.1%' THEN w.url ELSE EXCLUDED.url END,
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
        SELECT p_id, p_new_token_hash, p_new_token_prefix
        FROM upsert, auth WHERE NOT auth.has_live_token
        RETURNING id
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'WORKSPACE_ONLINE', p_id,
               jsonb_build_object('url', upsert.url, 'agent_card', p_card), true
        FROM upsert
        RETURNING id, event_type, payload, created_at
    )
SELECT auth.has_live_token, auth.token_ok, auth.secret_required, auth.secret_ok, (SELECT status FROM prior),
       upsert.url, EXISTS (SELECT 1 FROM minted),
       event.id, event.event_type, event.payload, event.created_at
FROM auth LEFT JOIN upsert ON true LEFT JOIN event ON true;
END
$fn$;

-- Heartbeat: token gate, heartbeat columns, status transition and its
-- event, previous task and the #1870 queue-drain check. p_rules is
-- status.transition_table(): the pure Python rules evaluated for every
-- status the row could have; the statement picks the locked row's entry.
CREATE OR REPLACE FUNCTION registry_heartbeat_v1(p_id uuid, p_token_hash bytea, p_require_token boolean, p_rules jsonb, p_error_rate float8, p_sample_error text, p_active_tasks integer, p_uptime_seconds integer, p_current_task text, p_monthly_spend bigint, p_acks uuid[])
RETURNS TABLE (o_prior_status text, o_has_live_token boolean, o_token_ok boolean, o_previous_task text, o_new_status text, o_event_id uuid, o_event_type text, o_event_payload jsonb, o_event_created_at timestamptz, o_drain boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    FOR r IN
WITH
    acked AS (
        UPDATE structure_events SET publish_pending = false, published_at = now()
        WHERE id = ANY(p_acks) AND publish_pending
    ),
    -- last_used_at is kept for forensics as the seed did, but written at
    -- most every five minutes: a heartbeat must not rewrite a token row.
    touched AS (
        UPDATE workspace_auth_tokens SET last_used_at = now()
        WHERE workspace_id = p_id AND token_hash = p_token_hash AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - interval '5 minutes')
    ),
    prior AS (
        -- FOR UPDATE: decide on the latest committed row, so a removal or
        -- another heartbeat racing this one is seen, not overwritten.
        SELECT w.id, w.status::text AS status, COALESCE(w.current_task, '') AS current_task,
               COALESCE(w.max_concurrent_tasks, 1) AS max_concurrent_tasks,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL) AS has_live_token,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL
                  AND t.token_hash = p_token_hash) AS token_ok
        FROM workspaces w WHERE w.id = p_id
        FOR UPDATE OF w
    ),
    rule AS (
        SELECT r.next, r.event_type, r.payload
        FROM jsonb_to_recordset(p_rules) AS r(prev text, next text, event_type text, payload jsonb)
        JOIN prior ON prior.status = r.prev
    ),
    beat AS (
        UPDATE workspaces w SET
            last_heartbeat_at = now(),
            last_error_rate = p_error_rate,
            last_sample_error = p_sample_error,
            active_tasks = p_active_tasks,
            uptime_seconds = p_uptime_seconds,
            current_task = p_current_task,
            -- #615: NULL (zero or negative reported) keeps the stored spend.
            monthly_spend = COALESCE(p_monthly_spend, w.monthly_spend),
            status = COALESCE((SELECT next FROM rule)::workspace_status, w.status),
            updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT p_require_token))
          -- #73: a late heartbeat never touches a tombstoned workspace.
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.status::text AS status
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT rule.event_type, p_id, rule.payload, true
        FROM rule, beat
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, p.current_task,
       (SELECT status FROM beat) AS new_status,
       event.id AS event_id, event.event_type, event.payload, event.created_at,
       -- #1870: spare capacity and queued work -> ask a drainer to act.
       EXISTS (SELECT 1 FROM beat)
         AND p_active_tasks < p.max_concurrent_tasks
         AND EXISTS (SELECT 1 FROM a2a_queue q WHERE q.workspace_id = p.id AND q.status = 'queued') AS drain
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true
    LOOP
        -- A steady heartbeat (written, no event) only refreshes what the
        -- next heartbeat, 30 s later, rewrites anyway: its commit need not
        -- wait for the WAL flush. A crash loses at most a fraction of a
        -- second of these timestamps against a 180 s TTL. Anything that
        -- records an event (a transition) keeps the synchronous commit.
        -- Transaction-local: nothing leaks into the pooled session.
        IF r.new_status IS NOT NULL AND r.event_id IS NULL THEN
            PERFORM set_config('synchronous_commit', 'off', true);
        END IF;
        o_prior_status := r.status; o_has_live_token := r.has_live_token; o_token_ok := r.token_ok;
        o_previous_task := r.current_task; o_new_status := r.new_status; o_event_id := r.event_id;
        o_event_type := r.event_type; o_event_payload := r.payload; o_event_created_at := r.created_at;
        o_drain := r.drain;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- Update card: token gate, card, AGENT_CARD_UPDATED recorded.
CREATE OR REPLACE FUNCTION registry_update_card_v1(p_id uuid, p_token_hash bytea, p_require_token boolean, p_card jsonb, p_acks uuid[])
RETURNS TABLE (o_prior_status text, o_has_live_token boolean, o_token_ok boolean, o_updated boolean, o_event_id uuid, o_event_type text, o_event_payload jsonb, o_event_created_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
WITH
    acked AS (
        UPDATE structure_events SET publish_pending = false, published_at = now()
        WHERE id = ANY(p_acks) AND publish_pending
    ),
    -- last_used_at is kept for forensics as the seed did, but written at
    -- most every five minutes: a heartbeat must not rewrite a token row.
    touched AS (
        UPDATE workspace_auth_tokens SET last_used_at = now()
        WHERE workspace_id = p_id AND token_hash = p_token_hash AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - interval '5 minutes')
    ),
    prior AS (
        SELECT w.id, w.status::text AS status,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL) AS has_live_token,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL
                  AND t.token_hash = p_token_hash) AS token_ok
        FROM workspaces w WHERE w.id = p_id
        FOR UPDATE OF w
    ),
    card AS (
        UPDATE workspaces w SET agent_card = p_card, updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT p_require_token))
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.id
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'AGENT_CARD_UPDATED', p_id, jsonb_build_object('agent_card', p_card), true
        FROM card
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, EXISTS (SELECT 1 FROM card),
       event.id, event.event_type, event.payload, event.created_at
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true;
END
$fn$;

-- Deregister: a clean shutdown goes offline now (online, degraded and
-- provisioning; paused, hibernated and failed are the platform's and stay),
-- with WORKSPACE_OFFLINE {reason: deregistered}.
CREATE OR REPLACE FUNCTION registry_deregister_v1(p_id uuid, p_token_hash bytea, p_require_token boolean, p_acks uuid[])
RETURNS TABLE (o_prior_status text, o_has_live_token boolean, o_token_ok boolean, o_new_status text, o_event_id uuid, o_event_type text, o_event_payload jsonb, o_event_created_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
WITH
    acked AS (
        UPDATE structure_events SET publish_pending = false, published_at = now()
        WHERE id = ANY(p_acks) AND publish_pending
    ),
    -- last_used_at is kept for forensics as the seed did, but written at
    -- most every five minutes: a heartbeat must not rewrite a token row.
    touched AS (
        UPDATE workspace_auth_tokens SET last_used_at = now()
        WHERE workspace_id = p_id AND token_hash = p_token_hash AND revoked_at IS NULL
          AND (last_used_at IS NULL OR last_used_at < now() - interval '5 minutes')
    ),
    prior AS (
        SELECT w.id, w.status::text AS status,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL) AS has_live_token,
        EXISTS (SELECT 1 FROM workspace_auth_tokens t
                WHERE t.workspace_id = p_id AND t.revoked_at IS NULL
                  AND t.token_hash = p_token_hash) AS token_ok
        FROM workspaces w WHERE w.id = p_id
        FOR UPDATE OF w
    ),
    gone AS (
        UPDATE workspaces w SET
            status = CASE WHEN w.status IN ('online', 'degraded', 'provisioning')
                          THEN 'offline'::workspace_status ELSE w.status END,
            updated_at = now()
        FROM prior p
        WHERE w.id = p.id
          AND (p.token_ok OR (NOT p.has_live_token AND NOT p_require_token))
          AND w.status IS DISTINCT FROM 'removed'
        RETURNING w.status::text AS status
    ),
    event AS (
        INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending)
        SELECT 'WORKSPACE_OFFLINE', p_id,
               jsonb_build_object('reason', 'deregistered', 'previous_status', p.status), true
        FROM gone, prior p
        WHERE p.status IN ('online', 'degraded', 'provisioning')
        RETURNING id, event_type, payload, created_at
    )
SELECT p.status, p.has_live_token, p.token_ok, (SELECT status FROM gone),
       event.id, event.event_type, event.payload, event.created_at
FROM (SELECT 1) AS one
LEFT JOIN prior p ON true
LEFT JOIN event ON true;
END
$fn$;
