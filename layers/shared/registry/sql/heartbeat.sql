-- Heartbeat (seed: RegistryHandler.Heartbeat + evaluateStatus), one call,
-- one round trip, one transaction. The gate of registry_gate_v2 decides
-- 'not_registered' (404: the agent registers again), 'unauthorized' (401),
-- 'removed' (410, nothing touched, #73); on 'ok' the heartbeat columns are
-- written and the status moves if the rules say so, with its event.
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
    gate record;
    rule record;
BEGIN
    gate := registry_gate_v2(p_id, p_token_hash, p_require_token);
    outcome := gate.outcome;
    authorized_by := gate.authorized_by;
    prior_status := (gate.ws).status::text;
    previous_task := COALESCE((gate.ws).current_task, '');
    IF outcome <> 'ok' THEN
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT r.next, r.event_type, r.payload INTO rule
      FROM jsonb_to_recordset(p_rules) AS r(prev text, next text, event_type text, payload jsonb)
     WHERE r.prev = prior_status;
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
        SELECT e.id, e.event_type, e.payload, e.created_at INTO event_id, event_type, event_payload, occurred_at
          FROM registry_record_event_v2(p_id, rule.event_type, rule.payload, revision) e;
    END IF;
    -- #1870: spare capacity and queued work -> ask a drainer to act.
    drain := p_active_tasks < COALESCE((gate.ws).max_concurrent_tasks, 1)
             AND EXISTS (SELECT 1 FROM a2a_queue q WHERE q.workspace_id = p_id AND q.status = 'queued');
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
