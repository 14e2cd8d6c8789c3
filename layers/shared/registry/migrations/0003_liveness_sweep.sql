-- The liveness sweep looks only at online/degraded workspaces whose last
-- heartbeat is older than the TTL. This partial index holds exactly the
-- rows it can expire, ordered by heartbeat time, so a sweep reads the
-- silent rows and stops: its cost follows the silent count, not the fleet.
--
-- Trade-off, on purpose: last_heartbeat_at is now indexed, so a heartbeat
-- UPDATE is no longer HOT and adds an entry to each index of workspaces.
-- The alternative (a Redis sorted set) would lose the sweep's input in a
-- cache failover; Postgres stays the single record of liveness.
CREATE INDEX IF NOT EXISTS idx_workspaces_liveness
    ON workspaces (last_heartbeat_at)
    WHERE status IN ('online', 'degraded');

-- One row of sweep state shared by every sweep invocation: whether self-
-- preservation is active and since when (so entering and leaving are each
-- announced once, whichever container runs the sweep).
CREATE TABLE IF NOT EXISTS registry_sweep_state (
    id                      BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    self_preservation       TEXT NOT NULL DEFAULT 'normal'
        CHECK (self_preservation IN ('normal', 'active', 'exhausted')),
    self_preservation_since TIMESTAMPTZ,
    last_sweep_at           TIMESTAMPTZ
);
INSERT INTO registry_sweep_state (id) VALUES (true) ON CONFLICT DO NOTHING;
