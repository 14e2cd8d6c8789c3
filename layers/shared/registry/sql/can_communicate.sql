-- The access rule (seed: registry.CanCommunicate, access.go), decided in
-- this one function so discover and check-access share it. Two workspaces
-- may talk when:
--   - they are the same workspace (the seed says so even for an unknown id);
--   - they are siblings: the same parent, or both root-level;
--   - one is an ancestor of the other, at any distance, either way
--     (PM -> Backend Engineer, Security Auditor -> PM: the audit-routing
--     contract the seed's comment explains);
-- and never otherwise (no horizontal chatter across teams). An unknown
-- caller or target may talk to nobody.
--
-- The seed walked the parent chain one query per level. Here each chain is
-- one recursive CTE over the primary key, so a call costs no more round
-- trips however deep the tree. A chain is followed at most 32 levels up
-- (the seed's maxAncestorWalk: org trees are 3-5 deep), which also ends
-- the walk when a corrupt parent_id cycle would loop forever.
CREATE OR REPLACE FUNCTION registry_can_communicate_v1(p_caller uuid, p_target uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    caller_parent uuid;
    target_parent uuid;
BEGIN
    IF p_caller = p_target THEN
        RETURN true;
    END IF;
    SELECT ws.parent_id INTO caller_parent FROM workspaces ws WHERE ws.id = p_caller;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT ws.parent_id INTO target_parent FROM workspaces ws WHERE ws.id = p_target;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Siblings, root-level ones included (both parents NULL).
    IF caller_parent IS NOT DISTINCT FROM target_parent THEN
        RETURN true;
    END IF;
    -- Ancestors of each side, one level per row: the caller above the
    -- target, or the target above the caller.
    RETURN EXISTS (
        WITH RECURSIVE chain(side, id, depth) AS (
            SELECT 't', target_parent, 1 WHERE target_parent IS NOT NULL
            UNION ALL
            SELECT 'c', caller_parent, 1 WHERE caller_parent IS NOT NULL
            UNION ALL
            SELECT c.side, ws.parent_id, c.depth + 1
              FROM chain c JOIN workspaces ws ON ws.id = c.id
             WHERE ws.parent_id IS NOT NULL AND c.depth < 32
        )
        SELECT 1 FROM chain
         WHERE (chain.side = 't' AND chain.id = p_caller) OR (chain.side = 'c' AND chain.id = p_target));
END
$fn$;
