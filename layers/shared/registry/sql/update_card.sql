-- Update card (seed: RegistryHandler.UpdateCard): the same gate and order
-- as the heartbeat ('not_registered', 'unauthorized', 'removed', 'ok'); the
-- card is replaced and AGENT_CARD_UPDATED recorded with the next revision.
CREATE OR REPLACE FUNCTION registry_update_card_v2(p_id uuid, p_token_hash bytea, p_require_token boolean, p_card jsonb)
RETURNS TABLE (
    outcome text, authorized_by text, prior_status text,
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
    UPDATE workspaces ws SET agent_card = p_card, revision = ws.revision + 1, updated_at = now()
     WHERE ws.id = p_id
    RETURNING ws.revision INTO revision;
    ev := registry_record_event_v2(p_id, 'AGENT_CARD_UPDATED', jsonb_build_object('agent_card', p_card), revision);
    event_id := ev.id;
    event_type := ev.event_type;
    event_payload := ev.payload;
    occurred_at := ev.created_at;
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
