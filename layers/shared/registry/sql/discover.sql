-- Discover (seed: DiscoveryHandler.Discover), everything Postgres knows in
-- one call, so a discovery that Redis cannot answer is one round trip
-- whatever the depth of the tree. Decides, in this order:
--   'unauthorized'  the caller's token gate refused (401; registry_authorize_v2,
--                   exactly as a heartbeat of the caller would be gated)
--   'removed'       the caller is a tombstone (410)
--   'not_found'     no such target (404; the seed answered 403, see
--                   docs/discovery.md)
--   'forbidden'     the access rule says no (403; registry_can_communicate_v1,
--                   which also refuses an unknown caller)
--   'ok'            target_* describe the workspace to answer for: the
--                   target, or where its forwarded_to chain leads, followed
--                   at most 5 hops (the seed's host path; a longer chain or
--                   a cycle stops at the fifth). The URL is chosen in Python
--                   (registry/discovery.py): it also depends on Redis and
--                   the URL guard.
-- Nothing is locked: a read, except that the gate confirms a token on its
-- first use.
CREATE OR REPLACE FUNCTION registry_discover_v1(p_caller uuid, p_target uuid, p_token_hash bytea, p_require_token boolean)
RETURNS TABLE (
    outcome text, authorized_by text, caller_runtime text,
    target_id text, target_name text, target_runtime text, target_url text, target_status text)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    caller record;
    answered record;
BEGIN
    SELECT ws.status::text AS status, COALESCE(ws.runtime, 'langgraph') AS runtime
      INTO caller FROM workspaces ws WHERE ws.id = p_caller;
    authorized_by := registry_authorize_v2(p_caller, p_token_hash, p_require_token);
    IF authorized_by = 'unauthorized' THEN
        outcome := 'unauthorized';
        RETURN NEXT;
        RETURN;
    END IF;
    IF caller.status = 'removed' THEN
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;
    caller_runtime := caller.runtime;
    PERFORM 1 FROM workspaces ws WHERE ws.id = p_target;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    IF NOT registry_can_communicate_v1(p_caller, p_target) THEN
        outcome := 'forbidden';
        RETURN NEXT;
        RETURN;
    END IF;

    WITH RECURSIVE hops(id, n) AS (
        SELECT p_target, 0
        UNION ALL
        SELECT ws.forwarded_to, h.n + 1
          FROM hops h JOIN workspaces ws ON ws.id = h.id
         WHERE ws.forwarded_to IS NOT NULL AND h.n < 5
    )
    SELECT ws.id::text AS id, COALESCE(ws.name, '') AS name, COALESCE(ws.runtime, 'langgraph') AS runtime,
           COALESCE(ws.url, '') AS url, ws.status::text AS status
      INTO answered
      FROM hops h JOIN workspaces ws ON ws.id = h.id
     ORDER BY h.n DESC
     LIMIT 1;
    target_id := answered.id;
    target_name := answered.name;
    target_runtime := answered.runtime;
    target_url := answered.url;
    target_status := answered.status;
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
