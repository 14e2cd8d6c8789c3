"""Issue a one-time registration secret for a workspace:
``python -m registry.provision --workspace-id <uuid>``.

For platforms that turn on bootstrap hardening: the provisioner calls this
(or runs the same SQL, below) when it creates a workspace, passes the
printed secret to the container, and the agent sends it as
``registration_secret`` in its first /registry/register. Only the sha256 is
stored; the secret is printed once. The same SQL from any language:

    INSERT INTO workspaces (id, name, registration_secret_hash)
    VALUES ($1, $1, sha256(convert_to($2, 'UTF8')))
    ON CONFLICT (id) DO UPDATE SET registration_secret_hash = EXCLUDED.registration_secret_hash;
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

import psycopg2

from registry.models import _workspace_id
from registry.tokens import hash_secret

ISSUE = """
INSERT INTO workspaces (id, name, registration_secret_hash)
VALUES (%(id)s, %(id)s, %(hash)s)
ON CONFLICT (id) DO UPDATE SET registration_secret_hash = EXCLUDED.registration_secret_hash, updated_at = now()
WHERE workspaces.status IS DISTINCT FROM 'removed'
RETURNING id
"""


def issue(dsn: str, workspace_id: str) -> str:
    """Store a new secret's hash on the workspace (created as provisioning
    if missing) and return the secret. A removed workspace gets none."""
    workspace_id = _workspace_id(workspace_id)
    secret = secrets.token_urlsafe(32)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(ISSUE, {"id": workspace_id, "hash": hash_secret(secret)})
            if cur.fetchone() is None:
                raise ValueError(f"workspace {workspace_id} is removed")
    finally:
        conn.close()
    return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Issue a one-time registration secret for a workspace.")
    parser.add_argument("--workspace-id", required=True)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="defaults to $DATABASE_URL")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    try:
        print(issue(args.database_url, args.workspace_id))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
