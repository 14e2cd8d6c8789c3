-- migrate: no transaction
-- Runs outside a transaction (registry/migrate.py), one statement at a
-- time: each statement below is idempotent, so a run cut short is simply
-- run again.

-- The workspaces that existed before 0010's triggers, copied into the
-- listing index in batches of 5,000, each committed on its own: a row the
-- triggers wrote meanwhile is newer and is kept (DO NOTHING), and no batch
-- holds a row lock long enough to delay a heartbeat's status change.
DO $$
DECLARE
    last_id uuid := '00000000-0000-0000-0000-000000000000';
    next_id uuid;
BEGIN
    LOOP
        SELECT b.id INTO next_id
        FROM (SELECT w.id FROM workspaces w WHERE w.id > last_id ORDER BY w.id LIMIT 5000) b
        ORDER BY b.id DESC LIMIT 1;
        EXIT WHEN next_id IS NULL;
        INSERT INTO registry_fleet (id, status, created_at, changed_at, terms)
        SELECT w.id, w.status, COALESCE(w.created_at, now()), COALESCE(w.updated_at, w.created_at, now()),
               registry_fleet_terms_v1(w.name, w.role, w.agent_card)
        FROM workspaces w
        WHERE w.id > last_id AND w.id <= next_id
        ON CONFLICT (id) DO NOTHING;
        COMMIT;
        last_id := next_id;
    END LOOP;
END
$$;

-- The change feed's order (0010), for the whole feed, one workspace's
-- events and one event type's, each read from a cursor onwards.
-- CONCURRENTLY: a platform's structure_events can be large and is written
-- while the deploy runs; a plain CREATE INDEX would block those writes for
-- the whole build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_structure_events_feed
    ON structure_events (feed_xid, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_structure_events_workspace_feed
    ON structure_events (workspace_id, feed_xid, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_structure_events_type_feed
    ON structure_events (event_type, feed_xid, created_at, id);
