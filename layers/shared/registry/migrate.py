"""Apply the SQL migrations in order: ``python -m registry.migrate``.

Two kinds of files, each run in its own transaction and recorded with its
sha256 in ``registry_schema_migrations`` (its own table, so it never
collides with the platform's ``schema_migrations``):

- ``registry/migrations/NNNN_*.sql``: the schema, in name order, each
  applied once. Append-only: an applied file that changed is an error.
- ``registry/sql/<operation>.sql``: the request functions, one file per
  operation (``CREATE OR REPLACE FUNCTION registry_<operation>_vN``), applied
  after the schema whenever the file is new or changed. The version is part
  of the function's name, so a deploy never breaks the containers of the
  release before it: a change that keeps a function's parameters, result
  columns and outcomes is edited in place; any other change is a new name
  (``_vN+1``) in the same file, the previous definition stays (moved to a
  numbered migration) until a later release drops it. Postgres itself
  refuses to change a function's result type in place.

Functions never migrate on a cold start; this command, ``make migrate`` and
the deploy-time custom resource do.

Everything the runner sets lives and dies with one transaction, so the
connection can go through RDS Proxy like the functions' own (docs/deploy.md):

- concurrent runs (two deploys, a deploy and a developer) queue on a
  transaction-level advisory lock taken again for each file, and re-check
  that file under it; a session-level lock would pin the proxy session;
- its own time-outs are ``SET LOCAL`` in each file's transaction: the lock
  time-out keeps an ``ALTER TABLE`` from queuing behind a long transaction
  (and every query from queuing behind it), and the statement time-out
  overrides the role's short request default (migration 0007) with the
  caller's budget. RDS Proxy pins a session that runs SET (its PostgreSQL
  rules make no exception for SET LOCAL) until the session ends: this one is
  the runner's own, short-lived, and closed at the end of the run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
DEFINITIONS_DIR = Path(__file__).with_name("sql")
_LOCK_KEY = 0x5245_4749  # "REGI": any constant shared by all runners
# A DDL statement waits at most this long for a table lock.
DEFAULT_LOCK_TIMEOUT_MS = 10_000

_TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS registry_schema_migrations (
    filename   TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[Path]:
    return sorted(p for p in MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".down.sql"))


def definition_files() -> list[Path]:
    return sorted(DEFINITIONS_DIR.glob("*.sql"))


def planned() -> list[tuple[str, Path]]:
    """Every file in the order it is applied, with the name it is recorded
    under (migrations keep their bare names, as earlier releases recorded
    them; definitions are recorded as sql/<file>)."""
    return [(p.name, p) for p in migration_files()] + [(f"sql/{p.name}", p) for p in definition_files()]


def apply(dsn: str, *, statement_timeout_ms: int = 0, lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS) -> list[str]:
    """Apply every migration not applied yet; return the names applied.

    ``statement_timeout_ms`` 0 means no limit (an operator at a terminal);
    the deploy-time custom resource passes what is left of its deadline.
    A file that was applied and has changed since is an error: migrations
    are append-only, a changed one would leave databases that differ.
    """
    applied_now = []
    conn = psycopg2.connect(dsn, connect_timeout=10, application_name="workspace-registry-migrate")
    try:
        for name, path in planned():
            repeatable = path.parent != MIGRATIONS_DIR
            sql = path.read_text()
            digest = hashlib.sha256(sql.encode()).hexdigest()
            with conn, conn.cursor() as cur:  # one transaction: committed, or rolled back on error
                cur.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
                cur.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                cur.execute(_TRACKING_TABLE)
                cur.execute("SELECT sha256 FROM registry_schema_migrations WHERE filename = %s", (name,))
                done = cur.fetchone()
                if done is not None and done[0] == digest:
                    continue
                if done is not None and not repeatable:
                    raise RuntimeError(f"migration {name} changed after it was applied")
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO registry_schema_migrations (filename, sha256) VALUES (%s, %s) "
                    "ON CONFLICT (filename) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
                    (name, digest),
                )
            applied_now.append(name)
    finally:
        conn.close()
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="defaults to $DATABASE_URL")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    applied = apply(args.database_url)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
