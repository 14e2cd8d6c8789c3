"""Apply the SQL migrations in order: ``python -m registry.migrate``.

Files in ``registry/migrations/`` run in name order, each in its own
transaction, and are recorded in ``registry_schema_migrations`` (its own
table, so it never collides with the platform's ``schema_migrations``). An
advisory lock makes concurrent runs (two deploys, a deploy and a developer)
wait for each other instead of racing. Functions never migrate on a cold
start; this command, ``make migrate`` and the deploy-time custom resource
do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x5245_4749  # "REGI": any constant shared by all runners

_TRACKING_TABLE = """
CREATE TABLE IF NOT EXISTS registry_schema_migrations (
    filename   TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[Path]:
    return sorted(p for p in MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".down.sql"))


def apply(dsn: str) -> list[str]:
    """Apply every migration not applied yet; return the names applied.

    A file that was applied and has changed since is an error: migrations
    are append-only, a changed one would leave databases that differ.
    """
    applied_now = []
    conn = psycopg2.connect(dsn, connect_timeout=10, application_name="workspace-registry-migrate")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                cur.execute(_TRACKING_TABLE)
                cur.execute("SELECT filename, sha256 FROM registry_schema_migrations")
                done = dict(cur.fetchall())
                for path in migration_files():
                    sql = path.read_text()
                    digest = hashlib.sha256(sql.encode()).hexdigest()
                    if path.name in done:
                        if done[path.name] != digest:
                            raise RuntimeError(f"migration {path.name} changed after it was applied")
                        continue
                    conn.autocommit = False
                    try:
                        cur.execute(sql)
                        cur.execute(
                            "INSERT INTO registry_schema_migrations (filename, sha256) VALUES (%s, %s)",
                            (path.name, digest),
                        )
                        conn.commit()
                    except BaseException:
                        conn.rollback()
                        raise
                    finally:
                        conn.autocommit = True
                    applied_now.append(path.name)
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
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
