-- One page of the operators' workspace list (GET /admin/workspaces), read
-- only: the ids of the page's rows, newest registration first, after the
-- cursor (p_after_created_at, p_after_id). registry/fleet.py joins the rows.
--
-- Why a function: the best plan depends on how many workspaces match, which
-- no single statement lets the planner find out. Walking the list in order
-- (one walk per status over idx_registry_fleet_order, merged) is cheapest
-- when matches are common, and ruinous when they are rare (a search for one
-- card among a million walks the million); the search index
-- (idx_registry_fleet_terms) and a sort are cheap when matches are rare and
-- ruinous when they are common (sorting a million). So, in one round trip:
--   1. walk each status in order, at most p_scan rows each, testing the
--      search and changed-since filters on the way. The page is exact when
--      every walk either ran out of rows or found p_limit matches (a row
--      it did not reach comes after p_limit matches of its own);
--   2. otherwise matches are rarer than p_limit in p_scan, and the filters'
--      indexes find them all for a sort, planned with the actual values
--      (EXECUTE), so the planner sees the real search.
-- Either way a page reads at most (statuses x p_scan) rows in step 1, and
-- in step 2 about as many rows as match. Without a search or changed-since
-- filter there is nothing to test: p_scan is p_limit and step 1 is exact.
CREATE OR REPLACE FUNCTION registry_fleet_page_v1(
    p_statuses workspace_status[], p_after_created_at timestamptz, p_after_id uuid,
    p_since timestamptz, p_query tsquery, p_searching boolean, p_limit integer, p_scan integer)
RETURNS TABLE (id uuid, created_at timestamptz, changed_at timestamptz)
LANGUAGE plpgsql STABLE AS $fn$
#variable_conflict use_column
DECLARE
    v_complete boolean;
    v_ids uuid[];
BEGIN
    WITH walked AS (
            SELECT s.status, x.id, x.created_at, x.hit
            FROM unnest(p_statuses) AS s(status)
            CROSS JOIN LATERAL (
                SELECT f.id, f.created_at,
                       (NOT p_searching OR f.terms @@ p_query) AND (p_since IS NULL OR f.changed_at >= p_since) AS hit
                FROM registry_fleet f
                WHERE f.status = s.status
                  AND (p_after_id IS NULL OR (f.created_at, f.id) < (p_after_created_at, p_after_id))
                ORDER BY f.created_at DESC, f.id DESC
                LIMIT p_scan
            ) x
        ),
        walks AS (
            SELECT count(*) AS examined, count(*) FILTER (WHERE hit) AS hits FROM walked GROUP BY status
        )
    SELECT COALESCE(bool_and(w.examined < p_scan OR w.hits >= p_limit), true),
           (SELECT array_agg(p.id) FROM (SELECT k.id FROM walked k WHERE k.hit
                                        ORDER BY k.created_at DESC, k.id DESC LIMIT p_limit) p)
      INTO v_complete, v_ids
      FROM walks w;

    IF v_complete THEN
        RETURN QUERY SELECT f.id, f.created_at, f.changed_at FROM registry_fleet f WHERE f.id = ANY(v_ids);
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT f.id, f.created_at, f.changed_at FROM registry_fleet f
          WHERE f.status = ANY($1)
            AND ($3::uuid IS NULL OR (f.created_at, f.id) < ($2, $3))
            AND (NOT $5 OR f.terms @@ $4)
            AND ($6::timestamptz IS NULL OR f.changed_at >= $6)
          ORDER BY f.created_at DESC, f.id DESC
          LIMIT $7'
        USING p_statuses, p_after_created_at, p_after_id, p_query, p_searching, p_since, p_limit;
END
$fn$;
