-- Deregister: a clean shutdown goes offline now, not a TTL later. Same gate
-- and order as the heartbeat. online, degraded and provisioning become
-- offline with WORKSPACE_OFFLINE {reason: deregistered}; paused, hibernated
-- and failed are the platform's and stay as they are ('ok', no event).
CREATE OR REPLACE FUNCTION registry_deregister_v2(p_id uuid, p_token_hash bytea, p_require_token boolean)
RETURNS TABLE (
    outcome text, authorized_by text, prior_status text, new_status text,
    revision bigint, event_id uuid, event_type text, event_payload jsonb, occurred_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    ev structure_events;
BEGIN
    SELECT ws.status::text INTO prior_status FROM workspaces ws WHERE ws.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_registered';
        RETURN NEXT;
        RETURN;
    END IF;
    authorized_by := registry_authorize_v2(p_id, p_token_hash, p_require_token);
    IF authorized_by = 'unauthorized' THEN
        outcome := 'unauthorized';
        RETURN NEXT;
        RETURN;
    END IF;
    IF prior_status = 'removed' THEN  -- #73
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;
    outcome := 'ok';
    new_status := prior_status;
    IF prior_status IN ('online', 'degraded', 'provisioning') THEN
        UPDATE workspaces ws SET status = 'offline', revision = ws.revision + 1, updated_at = now()
         WHERE ws.id = p_id
        RETURNING ws.status::text, ws.revision INTO new_status, revision;
        ev := registry_record_event_v2(
            p_id, 'WORKSPACE_OFFLINE', jsonb_build_object('reason', 'deregistered', 'previous_status', prior_status), revision);
        event_id := ev.id;
        event_type := ev.event_type;
        event_payload := ev.payload;
        occurred_at := ev.created_at;
    END IF;
    RETURN NEXT;
END
$fn$;
