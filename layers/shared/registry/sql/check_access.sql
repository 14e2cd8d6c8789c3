-- Check access (seed: DiscoveryHandler.CheckAccess): may caller talk to
-- target, by the access rule (registry_can_communicate_v1). The seed
-- answered anyone, which let any client map the org tree; here the caller
-- presents its own token, through the same gate as every other request.
-- Decides, in this order:
--   'unauthorized'  the caller's token gate refused (401)
--   'removed'       the caller is a tombstone (410)
--   'ok'            `allowed`: the rule's answer (false for an unknown
--                   caller or target, as in the seed)
CREATE OR REPLACE FUNCTION registry_check_access_v1(p_caller uuid, p_target uuid, p_token_hash bytea, p_require_token boolean)
RETURNS TABLE (outcome text, authorized_by text, allowed boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    caller_status text;
BEGIN
    SELECT ws.status::text INTO caller_status FROM workspaces ws WHERE ws.id = p_caller;
    authorized_by := registry_authorize_v2(p_caller, p_token_hash, p_require_token);
    IF authorized_by = 'unauthorized' THEN
        outcome := 'unauthorized';
        RETURN NEXT;
        RETURN;
    END IF;
    IF caller_status = 'removed' THEN
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;
    allowed := registry_can_communicate_v1(p_caller, p_target);
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
