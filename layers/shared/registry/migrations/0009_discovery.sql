-- Peer discovery (issue #13): what the read side needs that a registry-only
-- database may lack. Additive, and a no-op on a platform database, which
-- has all of it already.

-- The hierarchy and the peer fields, as the platform declares them
-- (molecule-core 001_workspaces.sql), for a database that predates them.
ALTER TABLE workspaces
    ADD COLUMN IF NOT EXISTS role TEXT,
    ADD COLUMN IF NOT EXISTS tier INTEGER DEFAULT 1,
    ADD COLUMN IF NOT EXISTS parent_id UUID REFERENCES workspaces(id),
    ADD COLUMN IF NOT EXISTS forwarded_to UUID REFERENCES workspaces(id);

-- The platform's runtime column (molecule-core 011_workspace_runtime.sql),
-- same type and default: 'external' marks an agent outside the platform's
-- Docker network, whose registered URL is handed out as it is. NULL is
-- possible on old rows; every reader says COALESCE(runtime, 'langgraph').
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS runtime TEXT DEFAULT 'langgraph';

-- Peers (siblings and children) and the hierarchy walk look rows up by
-- parent_id. The platform creates this index under this exact name
-- (001_workspaces.sql, 014_indexes.sql), so on its database this line
-- finds it and adds no duplicate.
CREATE INDEX IF NOT EXISTS idx_workspaces_parent_id ON workspaces(parent_id);
