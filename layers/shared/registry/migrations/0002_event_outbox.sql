-- EventBridge delivery is at-least-once: a status event is recorded in
-- structure_events in the same statement as the change it announces, and
-- stays "pending" until PutEvents accepted it. Rows the platform's own Go
-- code inserts keep publish_pending = false and are never relayed, so
-- pointing the registry at a platform database does not replay its history.
-- The id column (a UUID) is the event_id consumers dedupe on.
ALTER TABLE structure_events
    ADD COLUMN IF NOT EXISTS publish_pending BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS published_at TIMESTAMPTZ;

-- The relay reads only pending rows, oldest first: the index holds only
-- them, so its size follows the backlog, not the table.
CREATE INDEX IF NOT EXISTS idx_structure_events_pending
    ON structure_events (created_at)
    WHERE publish_pending;
