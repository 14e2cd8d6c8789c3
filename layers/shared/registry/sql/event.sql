-- Records one event of a workspace: the only place an event row of the
-- registry is shaped. The caller has locked the workspace's row and just
-- incremented its revision; the event carries that revision as `sequence`,
-- and its time is read now, after the lock, so for one workspace both follow
-- the order in which the changes committed (a transaction's start time does
-- not: a register that waited for the lock would look older than the
-- deregister it waited for). `publish_pending` until the request that
-- recorded it, or else the relay, has published it.
CREATE OR REPLACE FUNCTION registry_record_event_v2(p_workspace_id uuid, p_event_type text, p_payload jsonb, p_sequence bigint)
RETURNS structure_events
LANGUAGE sql VOLATILE AS $fn$
    INSERT INTO structure_events (event_type, workspace_id, payload, publish_pending, sequence, created_at)
    VALUES (p_event_type, p_workspace_id, p_payload, true, p_sequence, clock_timestamp())
    RETURNING *;
$fn$;
