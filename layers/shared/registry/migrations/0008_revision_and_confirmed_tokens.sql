-- Columns the request functions of registry/sql/ (second version) need.
-- Additive, with defaults that need no table rewrite, so a platform
-- database and its running code are unaffected.

-- A per-workspace counter that every write recording an event of the
-- workspace increments in the same statement (status changes, card
-- updates). Events carry it as `sequence`: consumers order one workspace's
-- events by it, whatever the clocks or the commit order of racing requests.
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE structure_events ADD COLUMN IF NOT EXISTS sequence BIGINT;

-- A token the registry mints stays unconfirmed (NULL) until its first use,
-- so an agent whose first register answer was lost can register again and
-- get a new one (sql/register.sql). The default marks every existing token,
-- and every token the platform mints itself, as confirmed: only the
-- registry's own first registrations start unconfirmed.
ALTER TABLE workspace_auth_tokens ADD COLUMN IF NOT EXISTS confirmed_at TIMESTAMPTZ DEFAULT now();
