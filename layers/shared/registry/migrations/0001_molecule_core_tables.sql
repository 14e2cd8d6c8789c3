-- The molecule-core tables the registry reads and writes, with their
-- platform names and columns, so the functions can point at an existing
-- platform database. Everything is IF NOT EXISTS: on a platform database
-- this file changes nothing that is already there.

DO $$
BEGIN
    CREATE TYPE workspace_status AS ENUM (
        'provisioning', 'online', 'offline', 'degraded', 'failed', 'removed', 'paused', 'hibernated'
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Platform databases created before the paused/hibernated values (043's
-- first version) get them added.
ALTER TYPE workspace_status ADD VALUE IF NOT EXISTS 'paused';
ALTER TYPE workspace_status ADD VALUE IF NOT EXISTS 'hibernated';

CREATE TABLE IF NOT EXISTS workspaces (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                 TEXT NOT NULL,
    role                 TEXT,
    tier                 INTEGER DEFAULT 1,
    status               workspace_status DEFAULT 'provisioning',
    source_bundle_id     TEXT,
    agent_card           JSONB,
    url                  TEXT,
    parent_id            UUID REFERENCES workspaces(id),
    forwarded_to         UUID REFERENCES workspaces(id),
    last_heartbeat_at    TIMESTAMPTZ,
    last_error_rate      FLOAT DEFAULT 0,
    last_sample_error    TEXT,
    active_tasks         INTEGER DEFAULT 0,
    uptime_seconds       INTEGER DEFAULT 0,
    created_at           TIMESTAMPTZ DEFAULT now(),
    updated_at           TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_workspaces_status ON workspaces(status);

-- Every column the registry reads or writes, in case a platform database
-- predates it (009 current_task, 025 budget, 037 max_concurrent_tasks). The
-- platform's own indexes (parent_id, ...) are its business, not ours.
ALTER TABLE workspaces
    ADD COLUMN IF NOT EXISTS agent_card JSONB,
    ADD COLUMN IF NOT EXISTS url TEXT,
    ADD COLUMN IF NOT EXISTS last_heartbeat_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS last_error_rate FLOAT DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_sample_error TEXT,
    ADD COLUMN IF NOT EXISTS active_tasks INTEGER DEFAULT 0,
    ADD COLUMN IF NOT EXISTS uptime_seconds INTEGER DEFAULT 0,
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ DEFAULT now(),
    ADD COLUMN IF NOT EXISTS current_task TEXT,
    ADD COLUMN IF NOT EXISTS budget_limit BIGINT DEFAULT NULL,
    ADD COLUMN IF NOT EXISTS monthly_spend BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_concurrent_tasks INTEGER NOT NULL DEFAULT 1;

-- Phase 30.1: plaintext tokens are never stored, only sha256(token) and a
-- short prefix for display and debugging.
CREATE TABLE IF NOT EXISTS workspace_auth_tokens (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    token_hash   BYTEA NOT NULL,
    prefix       TEXT  NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    UNIQUE (token_hash)
);
CREATE INDEX IF NOT EXISTS workspace_auth_tokens_live_idx
    ON workspace_auth_tokens (workspace_id)
    WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS structure_events (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type    TEXT NOT NULL,
    workspace_id  UUID,
    agent_id      UUID,
    target_id     UUID,
    payload       JSONB,
    created_at    TIMESTAMPTZ DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_events_workspace_id ON structure_events(workspace_id);
CREATE INDEX IF NOT EXISTS idx_events_created_at ON structure_events(created_at);

-- #1870 Phase 1: task-level queue for A2A delegations that hit a busy
-- target; the target's next heartbeat with spare capacity drains it.
CREATE TABLE IF NOT EXISTS a2a_queue (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id    uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    caller_id       uuid,
    priority        smallint NOT NULL DEFAULT 50,
    body            jsonb NOT NULL,
    method          text,
    idempotency_key text,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    dispatched_at   timestamptz,
    completed_at    timestamptz,
    expires_at      timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued','dispatched','completed','dropped','failed')),
    last_error      text
);
CREATE INDEX IF NOT EXISTS idx_a2a_queue_dispatch
    ON a2a_queue (workspace_id, priority DESC, enqueued_at ASC)
    WHERE status = 'queued';
