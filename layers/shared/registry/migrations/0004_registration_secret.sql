-- Bootstrap hardening (beyond the seed): whoever registers an id first gets
-- its token. The platform that creates a workspace may store the sha256 of
-- a one-time registration secret on the row and hand the secret to the
-- container; the first register must then present it, and consumes it.
-- NULL (the default, and every existing row) keeps the seed's behaviour.
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS registration_secret_hash BYTEA;
