-- Deregister: a clean shutdown goes offline now, not a TTL later. The gate
-- of registry_gate_v2; then online, degraded and provisioning become
-- offline with WORKSPACE_OFFLINE {reason: deregistered}; paused, hibernated
-- and failed are the platform's and stay as they are ('ok', no event).
CREATE OR REPLACE FUNCTION registry_deregister_v2(p_id uuid, p_token_hash bytea, p_require_token boolean)
RETURNS TABLE (
    outcome text, authorized_by text, prior_status text, new_status text,
    revision bigint, event_id uuid, event_type text, event_payload jsonb, occurred_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    gate record;
BEGIN
    gate := registry_gate_v2(p_id, p_token_hash, p_require_token);
    outcome := gate.outcome;
    authorized_by := gate.authorized_by;
    prior_status := (gate.ws).status::text;
    new_status := prior_status;
    IF outcome = 'ok' AND prior_status IN ('online', 'degraded', 'provisioning') THEN
        UPDATE workspaces ws SET status = 'offline', revision = ws.revision + 1, updated_at = now()
         WHERE ws.id = p_id
        RETURNING ws.status::text, ws.revision INTO new_status, revision;
        SELECT e.id, e.event_type, e.payload, e.created_at INTO event_id, event_type, event_payload, occurred_at
          FROM registry_record_event_v2(
              p_id, 'WORKSPACE_OFFLINE', jsonb_build_object('reason', 'deregistered', 'previous_status', prior_status), revision) e;
    END IF;
    IF outcome <> 'ok' THEN
        new_status := NULL;
    END IF;
    RETURN NEXT;
END
$fn$;
