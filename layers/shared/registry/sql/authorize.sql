-- The token gate (seed Phase 30.1 / C18, 30.5 with p_require_token): the one
-- place it is decided, for every request function. Answers
--   'token'         the caller presented a live token of this workspace;
--   'grandfathered' the workspace has no live token and tokens are not
--                   required (a legacy workspace; its next register mints one);
--   'unauthorized'  anything else.
-- Only sha256 hashes are ever compared; the plaintext never reaches SQL.
--
-- A token's first use confirms it (sql/register.sql: until then a lost
-- first answer can be recovered) and consumes the one-time registration
-- secret it was minted with. last_used_at is kept for forensics as the seed
-- did, but written at most every five minutes: a heartbeat must not rewrite
-- a token row every 30 s.
CREATE OR REPLACE FUNCTION registry_authorize_v2(p_id uuid, p_token_hash bytea, p_require_token boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    t workspace_auth_tokens%ROWTYPE;
BEGIN
    IF p_token_hash IS NOT NULL THEN
        SELECT * INTO t FROM workspace_auth_tokens
        WHERE token_hash = p_token_hash AND workspace_id = p_id AND revoked_at IS NULL;
        IF FOUND THEN
            IF t.confirmed_at IS NULL THEN
                UPDATE workspace_auth_tokens SET confirmed_at = now(), last_used_at = now() WHERE id = t.id;
                UPDATE workspaces SET registration_secret_hash = NULL
                WHERE id = p_id AND registration_secret_hash IS NOT NULL;
            ELSIF t.last_used_at IS NULL OR t.last_used_at < now() - interval '5 minutes' THEN
                UPDATE workspace_auth_tokens SET last_used_at = now() WHERE id = t.id;
            END IF;
            RETURN 'token';
        END IF;
    END IF;
    IF p_require_token OR EXISTS (SELECT 1 FROM workspace_auth_tokens
                                  WHERE workspace_id = p_id AND revoked_at IS NULL) THEN
        RETURN 'unauthorized';
    END IF;
    RETURN 'grandfathered';
END
$fn$;

-- The gate of every request on an existing workspace (heartbeat,
-- update-card, deregister), in the seed's order: the row, locked FOR UPDATE
-- so the decision and the write see the latest committed version (a
-- removal or another request racing this one is seen, not overwritten);
-- then the token (registry_authorize_v2); then the tombstone (#73).
--   'not_registered' (404), 'unauthorized' (401), 'removed' (410), 'ok'.
-- The row lock is the caller's transaction's: it holds until its commit.
CREATE OR REPLACE FUNCTION registry_gate_v2(p_id uuid, p_token_hash bytea, p_require_token boolean,
    OUT outcome text, OUT authorized_by text, OUT ws workspaces)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    SELECT * INTO ws FROM workspaces w WHERE w.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_registered';
        RETURN;
    END IF;
    authorized_by := registry_authorize_v2(p_id, p_token_hash, p_require_token);
    outcome := CASE WHEN authorized_by = 'unauthorized' THEN 'unauthorized'
                    WHEN ws.status = 'removed' THEN 'removed'
                    ELSE 'ok' END;
END
$fn$;
