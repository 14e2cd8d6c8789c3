-- Every heartbeat moves its row in idx_workspaces_liveness; the entry it
-- leaves falls below the sweep's cut-off after the TTL and stays until
-- VACUUM. With the default scale factor (20 % of the table) a 1 M fleet
-- would pile up millions of them and the sweep would read them all
-- (make bench: 1 M dead entries cost a sweep 391 ms, 1.5 ms after VACUUM).
-- So workspaces is vacuumed after a fixed number of dead rows, not a share
-- of the table, and without throttling. Storage parameters only: no data
-- and no column of the platform's table changes.
ALTER TABLE workspaces SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
