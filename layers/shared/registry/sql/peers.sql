-- Peers (seed: DiscoveryHandler.Peers): the workspace's own view of its
-- team, in one call. Decides, in this order (a heartbeat's):
--   'not_registered'  no such workspace (404 workspace not found)
--   'unauthorized'    the token gate refused (401; registry_authorize_v2)
--   'removed'         a tombstone asks (410)
--   'ok'              `peers`: a JSON array, never null, of its siblings
--                     (same parent, or both root-level), then its children,
--                     then its parent; never a removed workspace, never
--                     itself; each workspace once, in its first group (a
--                     corrupt parent_id cycle can make the parent a child
--                     too). Within a group by name (bytewise), then id: the same
--                     rows give the same bytes, so the answer's ETag only
--                     changes when the answer does.
-- Each entry is the seed's shape: role null when empty, url '' when none,
-- agent_card null when NULL or JSON null. json (not jsonb) keeps the keys
-- in the seed's order. The ?q= filter and the URL guard are applied in
-- Python (registry/discovery.py), as the seed filtered after the read.
CREATE OR REPLACE FUNCTION registry_peers_v1(p_id uuid, p_token_hash bytea, p_require_token boolean)
RETURNS TABLE (outcome text, authorized_by text, peers json)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    me record;
BEGIN
    SELECT ws.status::text AS status, ws.parent_id INTO me FROM workspaces ws WHERE ws.id = p_id;
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
    IF me.status = 'removed' THEN
        outcome := 'removed';
        RETURN NEXT;
        RETURN;
    END IF;

    -- Each group is its own branch so each uses idx_workspaces_parent_id
    -- (or the primary key); the branch that does not apply is cut by its
    -- one-time condition on me.parent_id.
    SELECT COALESCE(json_agg(json_build_object(
               'id', p.id::text,
               'name', p.name,
               'role', NULLIF(p.role, ''),
               'tier', p.tier,
               'status', p.status::text,
               'url', COALESCE(p.url, ''),
               'parent_id', p.parent_id::text,
               'active_tasks', COALESCE(p.active_tasks, 0),
               'agent_card', CASE WHEN p.agent_card = 'null'::jsonb THEN NULL ELSE p.agent_card END)
             ORDER BY p.grp, p.name COLLATE "C", p.id), '[]'::json)
      INTO peers
      FROM (
        SELECT DISTINCT ON (m.id) m.*
          FROM (
            SELECT 1 AS grp, ws.* FROM workspaces ws
             WHERE me.parent_id IS NOT NULL AND ws.parent_id = me.parent_id
            UNION ALL
            SELECT 1, ws.* FROM workspaces ws
             WHERE me.parent_id IS NULL AND ws.parent_id IS NULL
            UNION ALL
            SELECT 2, ws.* FROM workspaces ws WHERE ws.parent_id = p_id
            UNION ALL
            SELECT 3, ws.* FROM workspaces ws WHERE ws.id = me.parent_id
          ) m
         WHERE m.id <> p_id AND m.status <> 'removed'
         ORDER BY m.id, m.grp
      ) p;
    outcome := 'ok';
    RETURN NEXT;
END
$fn$;
