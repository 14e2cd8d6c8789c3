-- The operators' fleet view (registry/fleet.py, GET /admin/...): a change
-- feed over structure_events and a listing index beside workspaces.
-- Additive; nothing here rewrites a table or touches the heartbeat's path.

-- Columns the fleet view shows, in case a platform database predates them
-- (0001 adds the ones the request functions use). Nullable or constant
-- defaults: no rewrite.
ALTER TABLE workspaces
    ADD COLUMN IF NOT EXISTS role TEXT,
    ADD COLUMN IF NOT EXISTS tier INTEGER DEFAULT 1,
    ADD COLUMN IF NOT EXISTS parent_id UUID,
    ADD COLUMN IF NOT EXISTS forwarded_to UUID,
    -- the listing's order (molecule-core's 001 has it; now() is stable, so
    -- existing rows all get the migration's time, without a rewrite)
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ DEFAULT now();

-- Change feed. Events are ordered by the id of the transaction that
-- recorded them (feed_xid), then by time and id inside one transaction.
-- The feed serves only events whose transaction is older than the oldest
-- one still running (pg_snapshot_xmin), so nothing can commit later with a
-- smaller key: a reader that resumes after a key never skips an event that
-- committed late, whatever the clocks or the commit order. A constant
-- default first, so existing rows (the platform's history) read as 0
-- without a rewrite; new rows, the platform's too, get their transaction's id.
ALTER TABLE structure_events ADD COLUMN IF NOT EXISTS feed_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE structure_events ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id();
-- Its indexes are built CONCURRENTLY by 0011 (a platform's events table can
-- be large and is written while the deploy runs).

-- Listing index. The heartbeat rewrites its workspace row every 30 s and
-- that update is not HOT (idx_workspaces_liveness), so every index on
-- workspaces costs every heartbeat. The listing's order, status and search
-- terms change only when a status, a card, a name or a role does, so they
-- live in this table, kept by triggers that fire only on those changes:
-- a steady heartbeat pays one WHEN test, not index writes.
CREATE TABLE IF NOT EXISTS registry_fleet (
    id         UUID PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    status     workspace_status,
    created_at TIMESTAMPTZ NOT NULL,
    -- When the status, card, name or role last changed (not telemetry).
    changed_at TIMESTAMPTZ NOT NULL,
    terms      TSVECTOR NOT NULL
);
-- Newest first within a status; the list merges one walk per status.
CREATE INDEX IF NOT EXISTS idx_registry_fleet_order ON registry_fleet (status, created_at, id);
CREATE INDEX IF NOT EXISTS idx_registry_fleet_terms ON registry_fleet USING gin (terms);
CREATE INDEX IF NOT EXISTS idx_registry_fleet_changed ON registry_fleet (changed_at);

-- Words of a name: lower case, split on anything not a letter or digit.
-- Longer words than 200 bytes are left out (nobody types them; tsvector
-- refuses lexemes over 2 KB). The same function splits the query, so both
-- sides agree on what a word is in this database's locale.
CREATE OR REPLACE FUNCTION registry_fleet_words_v1(p_text text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT COALESCE(array_agg(DISTINCT w), '{}')
    FROM regexp_split_to_table(lower(COALESCE(p_text, '')), '[^[:alnum:]]+') AS w
    WHERE w <> '' AND octet_length(w) <= 200;
$fn$;

-- What a workspace can be found by: the words of its name, role and card
-- name, and 'skill:<id>' / 'tag:<tag>' for each skill id and skill tag of
-- its A2A card (exact strings). Total on any JSON: the card is whatever an
-- agent or the platform stored, and this runs inside their writes, so a
-- skills field that is not a list, ids that are not strings, empty or
-- huge values are skipped, never an error. The words are split as
-- registry_fleet_words_v1 splits them (one split of the three joined).
-- PL/pgSQL, not SQL: called from the trigger, a SQL function was planned
-- again on every call (about 100 us a row); this one keeps its plan.
CREATE OR REPLACE FUNCTION registry_fleet_terms_v1(p_name text, p_role text, p_card jsonb)
RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
BEGIN
    RETURN array_to_tsvector(ARRAY(
        SELECT DISTINCT t FROM unnest(
            regexp_split_to_array(lower(concat_ws(' ', p_name, p_role,
                CASE WHEN jsonb_typeof(p_card -> 'name') = 'string' THEN p_card ->> 'name' END)), '[^[:alnum:]]+')
            || ARRAY(SELECT 'skill:' || (s #>> '{}')
                     FROM jsonb_path_query(p_card, 'lax $.skills[*].id ? (@.type() == "string")') AS s)
            || ARRAY(SELECT 'tag:' || (s #>> '{}')
                     FROM jsonb_path_query(p_card, 'lax $.skills[*].tags[*] ? (@.type() == "string")') AS s)
        ) AS t
        WHERE t <> '' AND t <> 'skill:' AND t <> 'tag:' AND octet_length(t) <= 200));
END
$fn$;

-- The search as a tsquery: every word of p_q as a prefix, and the exact
-- skill and tag terms, all required. Lexemes are quoted for tsquery's
-- parser (quotes doubled, backslashes escaped), so no input is syntax.
-- NULL when nothing is asked, or when p_q has no word at all (no match).
CREATE OR REPLACE FUNCTION registry_fleet_query_v1(p_q text, p_skill text, p_tag text)
RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT string_agg(
               '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''' || CASE WHEN prefix THEN ':*' ELSE '' END,
               ' & ')::tsquery
    FROM (
        SELECT w AS lexeme, true AS prefix FROM unnest(registry_fleet_words_v1(p_q)) AS w
        UNION ALL SELECT 'skill:' || p_skill, false WHERE p_skill IS NOT NULL
        UNION ALL SELECT 'tag:' || p_tag, false WHERE p_tag IS NOT NULL
    ) parts
    HAVING NOT (p_q IS NOT NULL AND cardinality(registry_fleet_words_v1(p_q)) = 0);
$fn$;

-- Keeps registry_fleet in step with workspaces, in the same transaction.
-- SECURITY DEFINER: the platform's own code writes workspaces too, possibly
-- as a role that has no rights on this table; its writes must not fail.
-- The search path is the migration's (FROM CURRENT), so the table and the
-- functions are found in this schema whoever the caller is.
CREATE OR REPLACE FUNCTION registry_fleet_sync_v1()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
BEGIN
    -- A status change alone (the sweep expiring hundreds at once) leaves
    -- the search terms as they are.
    IF TG_OP = 'UPDATE' AND OLD.name IS NOT DISTINCT FROM NEW.name AND OLD.role IS NOT DISTINCT FROM NEW.role
       AND OLD.agent_card IS NOT DISTINCT FROM NEW.agent_card THEN
        UPDATE registry_fleet f SET status = NEW.status, created_at = COALESCE(NEW.created_at, f.created_at), changed_at = now()
         WHERE f.id = NEW.id;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO registry_fleet AS f (id, status, created_at, changed_at, terms)
    VALUES (NEW.id, NEW.status, COALESCE(NEW.created_at, now()), now(),
            registry_fleet_terms_v1(NEW.name, NEW.role, NEW.agent_card))
    ON CONFLICT (id) DO UPDATE SET
        status = EXCLUDED.status,
        created_at = EXCLUDED.created_at,
        changed_at = EXCLUDED.changed_at,
        terms = EXCLUDED.terms;
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS registry_fleet_inserted ON workspaces;
CREATE TRIGGER registry_fleet_inserted AFTER INSERT ON workspaces
    FOR EACH ROW EXECUTE FUNCTION registry_fleet_sync_v1();
-- Fires only for updates that name these columns (every heartbeat names
-- status) and then only when one of them really changed.
DROP TRIGGER IF EXISTS registry_fleet_changed ON workspaces;
CREATE TRIGGER registry_fleet_changed AFTER UPDATE OF status, name, role, agent_card, created_at ON workspaces
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.name IS DISTINCT FROM NEW.name
          OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.agent_card IS DISTINCT FROM NEW.agent_card
          OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION registry_fleet_sync_v1();
-- Rows that existed before the triggers are copied by 0011, in batches.
