-- Update card (seed: RegistryHandler.UpdateCard): the gate of
-- registry_gate_v2 ('not_registered', 'unauthorized', 'removed', 'ok'); the
-- card is replaced and AGENT_CARD_UPDATED recorded with the next revision.
CREATE OR REPLACE FUNCTION registry_update_card_v2(p_id uuid, p_token_hash bytea, p_require_token boolean, p_card jsonb)
RETURNS TABLE (
    outcome text, authorized_by text, prior_status text,
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
    IF outcome = 'ok' THEN
        UPDATE workspaces ws SET agent_card = p_card, revision = ws.revision + 1, updated_at = now()
         WHERE ws.id = p_id
        RETURNING ws.revision INTO revision;
        SELECT e.id, e.event_type, e.payload, e.created_at INTO event_id, event_type, event_payload, occurred_at
          FROM registry_record_event_v2(p_id, 'AGENT_CARD_UPDATED', jsonb_build_object('agent_card', p_card), revision) e;
    END IF;
    RETURN NEXT;
END
$fn$;
