-- Register (seed: RegistryHandler.Register), one call, one transaction.
-- Decides, in this order (the seed's):
--   'unauthorized'     C18: the workspace has a live token and the caller
--                      does not present it (nothing is written)
--   'secret_required'  bootstrap hardening: the platform stored a one-time
--   'secret_invalid'   registration secret (or REQUIRE_REGISTRATION_SECRET)
--                      and it is missing or wrong
--   'removed'          a tombstone (#73): a late register from a container
--                      being torn down must not resurrect it
--   'ok'               upserted online, WORKSPACE_ONLINE recorded; `minted`
--                      says whether a token was minted ('first' or
--                      'reissued') and the caller shows it once
--
-- Tokens (Phase 30.1): the first registration, or a legacy workspace's next
-- one, mints the workspace's token; a re-registration with it keeps it. A
-- minted token stays unconfirmed until its first use (registry_authorize_v2).
-- If the first answer never reached the agent (Lambda time-out, network),
-- the agent registers again without a token: while the live token is
-- unconfirmed and younger than p_recovery_seconds, and the retry presents
-- what the first registration had to present (the registration secret when
-- one was required; otherwise the first-come rule of the bootstrap itself),
-- the unconfirmed token is revoked and a new one minted ('reissued'). After
-- the first use nothing changes: no token, no registration.
--
-- The advisory lock (transaction-level: RDS Proxy does not pin on it)
-- serialises registrations of one id, and each statement after it sees
-- what the previous registration committed. Registrations that race (two
-- containers starting, someone racing the agent, two retries) arrive within
-- moments of each other, while a retry after a lost answer comes after the
-- client gave up waiting: so a token younger than two seconds is never
-- replaced, and racing registrations still mint exactly one token.
CREATE OR REPLACE FUNCTION registry_register_v2(
    p_id uuid, p_url text, p_card jsonb, p_token_hash bytea, p_new_token_hash bytea, p_new_token_prefix text,
    p_secret_hash bytea, p_require_secret boolean, p_recovery_seconds integer)
RETURNS TABLE (
    outcome text, prior_status text, stored_url text, minted text, current_task text, active_tasks integer,
    revision bigint, event_id uuid, event_type text, event_payload jsonb, occurred_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    w record;
    known boolean;
    secret_required boolean;
    secret_ok boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('workspace-registry/register/' || p_id::text, 0));
    SELECT ws.status::text AS status, ws.registration_secret_hash
      INTO w FROM workspaces ws WHERE ws.id = p_id FOR UPDATE;
    known := FOUND;
    prior_status := w.status;
    secret_required := (known AND w.registration_secret_hash IS NOT NULL) OR p_require_secret;
    -- COALESCE: no secret presented compares as NULL, which must mean "not ok".
    secret_ok := COALESCE(known AND w.registration_secret_hash = p_secret_hash, false);

    CASE registry_authorize_v2(p_id, p_token_hash, false)
    WHEN 'token' THEN
        minted := NULL;
    WHEN 'grandfathered' THEN
        minted := 'first';
    ELSE
        IF p_token_hash IS NULL
           AND NOT EXISTS (SELECT 1 FROM workspace_auth_tokens t
                           WHERE t.workspace_id = p_id AND t.revoked_at IS NULL AND t.confirmed_at IS NOT NULL)
           AND EXISTS (SELECT 1 FROM workspace_auth_tokens t
                       WHERE t.workspace_id = p_id AND t.revoked_at IS NULL AND t.confirmed_at IS NULL
                         AND t.created_at > now() - p_recovery_seconds * interval '1 second'
                         AND t.created_at < now() - interval '2 seconds') THEN
            minted := 'reissued';
        ELSE
            outcome := 'unauthorized';
            RETURN NEXT;
            RETURN;
        END IF;
    END CASE;
    IF minted IS NOT NULL AND secret_required AND NOT secret_ok THEN
        outcome := CASE WHEN p_secret_hash IS NULL THEN 'secret_required' ELSE 'secret_invalid' END;
        RETURN NEXT;
        RETURN;
    END IF;
    IF known AND w.status = 'removed' THEN
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;

    INSERT INTO workspaces AS ws (id, name, url, agent_card, status, last_heartbeat_at, revision)
    VALUES (p_id, p_id::text, p_url, p_card, 'online', now(), 1)
    ON CONFLICT (id) DO UPDATE SET
        -- Keep a host-accessible URL the provisioner already set.
        url = CASE WHEN ws.url LIKE 'http://127.0.0.1%' THEN ws.url ELSE EXCLUDED.url END,
        agent_card = EXCLUDED.agent_card,
        status = 'online',
        last_heartbeat_at = now(),
        revision = ws.revision + 1,
        updated_at = now()
    WHERE ws.status IS DISTINCT FROM 'removed'
    RETURNING ws.url, COALESCE(ws.current_task, ''), COALESCE(ws.active_tasks, 0), ws.revision
      INTO stored_url, current_task, active_tasks, revision;
    IF NOT FOUND THEN  -- removed by the platform between our read and the write
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;

    IF minted = 'reissued' THEN
        UPDATE workspace_auth_tokens t SET revoked_at = now()
         WHERE t.workspace_id = p_id AND t.revoked_at IS NULL AND t.confirmed_at IS NULL;
    END IF;
    IF minted IS NOT NULL THEN
        INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix, created_at, confirmed_at)
        VALUES (p_id, p_new_token_hash, p_new_token_prefix, clock_timestamp(), NULL);
    END IF;

    SELECT e.id, e.event_type, e.payload, e.created_at INTO event_id, event_type, event_payload, occurred_at
      FROM registry_record_event_v2(p_id, 'WORKSPACE_ONLINE', jsonb_build_object('url', stored_url, 'agent_card', p_card), revision) e;
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
