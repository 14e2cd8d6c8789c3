-- Heartbeat (seed: RegistryHandler.Heartbeat + evaluateStatus), one call,
-- one round trip, one transaction. Decides, in this order (the seed's):
--   'not_registered'  no such workspace (404: the agent registers again)
--   'unauthorized'    the token gate refused (401; registry_authorize_v2)
--   'removed'         a tombstone (#73): nothing is touched (410)
--   'ok'              the heartbeat columns are written, the status moves
--                     if the rules say so, with its event
-- p_rules is status.transition_table(): the pure Python status rules
-- evaluated for every status the row could have; the locked row's entry is
-- applied. failed, paused and hibernated belong to the platform: their
-- heartbeat columns are written, their status never changes here.
CREATE OR REPLACE FUNCTION registry_heartbeat_v2(
    p_id uuid, p_token_hash bytea, p_require_token boolean, p_rules jsonb,
    p_error_rate float8, p_sample_error text, p_active_tasks integer, p_uptime_seconds integer,
    p_current_task text, p_monthly_spend bigint)
RETURNS TABLE (
    outcome text, authorized_by text, prior_status text, new_status text, previous_task text,
    revision bigint, drain boolean, event_id uuid, event_type text, event_payload jsonb, occurred_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    w record;
    rule record;
    ev structure_events;
BEGIN
    -- FOR UPDATE: decide on the latest committed row, so a removal or
    -- another heartbeat racing this one is seen, not overwritten.
    SELECT ws.status::text AS status, COALESCE(ws.current_task, '') AS current_task,
           COALESCE(ws.max_concurrent_tasks, 1) AS max_concurrent_tasks
      INTO w FROM workspaces ws WHERE ws.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_registered';
        RETURN NEXT;
        RETURN;
    END IF;
    prior_status := w.status;
    previous_task := w.current_task;
    authorized_by := registry_authorize_v2(p_id, p_token_hash, p_require_token);
    IF authorized_by = 'unauthorized' THEN
        outcome := 'unauthorized';
        RETURN NEXT;
        RETURN;
    END IF;
    IF w.status = 'removed' THEN
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT r.next, r.event_type, r.payload INTO rule
      FROM jsonb_to_recordset(p_rules) AS r(prev text, next text, event_type text, payload jsonb)
     WHERE r.prev = w.status;
    UPDATE workspaces ws SET
        last_heartbeat_at = now(),
        last_error_rate = p_error_rate,
        last_sample_error = p_sample_error,
        active_tasks = p_active_tasks,
        uptime_seconds = p_uptime_seconds,
        current_task = p_current_task,
        -- #615: NULL (zero or negative reported) keeps the stored spend.
        monthly_spend = COALESCE(p_monthly_spend, ws.monthly_spend),
        status = COALESCE(rule.next::workspace_status, ws.status),
        revision = ws.revision + CASE WHEN rule.next IS NULL THEN 0 ELSE 1 END,
        updated_at = now()
     WHERE ws.id = p_id
    RETURNING ws.status::text, ws.revision INTO new_status, revision;

    IF rule.next IS NULL THEN
        -- A steady heartbeat only refreshes what the next heartbeat, 30 s
        -- later, rewrites anyway: its commit need not wait for the WAL
        -- flush (a crash loses a fraction of a second of timestamps against
        -- a 180 s TTL). Anything that records an event commits synchronously.
        -- Transaction-local: nothing leaks into the pooled session.
        PERFORM set_config('synchronous_commit', 'off', true);
    ELSE
        ev := registry_record_event_v2(p_id, rule.event_type, rule.payload, revision);
        event_id := ev.id;
        event_type := ev.event_type;
        event_payload := ev.payload;
        occurred_at := ev.created_at;
    END IF;
    -- #1870: spare capacity and queued work -> ask a drainer to act.
    drain := p_active_tasks < w.max_concurrent_tasks
             AND EXISTS (SELECT 1 FROM a2a_queue q WHERE q.workspace_id = p_id AND q.status = 'queued');
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
