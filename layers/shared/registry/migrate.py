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

A migration whose first line is ``-- migrate: no transaction`` runs outside
a transaction, one statement at a time, for what Postgres refuses inside
one: ``CREATE INDEX CONCURRENTLY`` (an index on a large table that is being
written, built without blocking the writes) and ``DO`` blocks that commit in
batches. It gets a connection of its own, closed afterwards, so its
session-level time-outs and advisory lock (the same key) end with it (both
are also reset before it closes); the proxy pins that connection, which
nothing else uses, for the length of the file. Every statement in
such a file must be idempotent (``IF NOT EXISTS``, ``ON CONFLICT``): a run
cut short is recorded as not applied and runs the whole file again. A
concurrent build that failed leaves an INVALID index that ``IF NOT EXISTS``
would then skip for ever, so the runner drops the invalid indexes the file
creates before running it, and refuses to record it while one is invalid.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

import psycopg2

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
DEFINITIONS_DIR = Path(__file__).with_name("sql")
_LOCK_KEY = 0x5245_4749  # "REGI": any constant shared by all runners
# A DDL statement waits at most this long for a table lock.
DEFAULT_LOCK_TIMEOUT_MS = 10_000

NO_TRANSACTION = "-- migrate: no transaction"
# The application_name of the connection such a file runs on: its session
# state (SET, a session advisory lock) pins it behind RDS Proxy, knowingly.
OUTSIDE_TRANSACTION_APPLICATION = "workspace-registry-migrate-outside-transaction"
_CONCURRENT_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")

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
            if not repeatable and is_non_transactional(sql):
                # Applied already (the usual case): no connection of its own.
                with conn, conn.cursor() as cur:
                    cur.execute(_TRACKING_TABLE)
                    cur.execute("SELECT sha256 FROM registry_schema_migrations WHERE filename = %s", (name,))
                    done = cur.fetchone()
                if done is not None and done[0] == digest:
                    continue
                if _apply_outside_transaction(dsn, name, sql, digest, statement_timeout_ms, lock_timeout_ms):
                    applied_now.append(name)
                continue
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
                _record(cur, name, digest)
            applied_now.append(name)
    finally:
        conn.close()
    return applied_now


def _record(cur, name: str, digest: str) -> None:
    cur.execute(
        "INSERT INTO registry_schema_migrations (filename, sha256) VALUES (%s, %s) "
        "ON CONFLICT (filename) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
        (name, digest),
    )


def is_non_transactional(sql: str) -> bool:
    return sql.lstrip().splitlines()[0].strip() == NO_TRANSACTION if sql.strip() else False


def _apply_outside_transaction(dsn: str, name: str, sql: str, digest: str, statement_timeout_ms: int, lock_timeout_ms: int) -> bool:
    """Run a ``-- migrate: no transaction`` file; True when it was applied
    now, False when it already was (see the module doc)."""
    indexes = concurrent_indexes(sql)
    conn = psycopg2.connect(dsn, connect_timeout=10, application_name=OUTSIDE_TRANSACTION_APPLICATION)
    conn.autocommit = True
    locked = False
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cur.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            # Session-level, on this connection only: the statements commit
            # one by one, and no other runner may interleave with them.
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            locked = True
            cur.execute(_TRACKING_TABLE)
            cur.execute("SELECT sha256 FROM registry_schema_migrations WHERE filename = %s", (name,))
            done = cur.fetchone()
            if done is not None:
                if done[0] != digest:
                    raise RuntimeError(f"migration {name} changed after it was applied")
                return False
            for index in _invalid(cur, indexes):
                cur.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"')
            for statement in split_statements(sql):
                cur.execute(statement)
            invalid = _invalid(cur, indexes)
            if invalid:
                raise RuntimeError(f"migration {name}: index {', '.join(invalid)} was not built (INVALID); run the migrations again")
            _record(cur, name, digest)
        return True
    finally:
        # Left as found: behind a proxy the session's backend may outlive
        # this connection.
        if locked and not conn.closed:
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                    cur.execute("RESET ALL")
            except psycopg2.Error:
                pass
        conn.close()


def concurrent_indexes(sql: str) -> list[str]:
    """The names of the indexes a file builds with CREATE INDEX CONCURRENTLY IF NOT EXISTS."""
    return _CONCURRENT_INDEX.findall(sql)


def _invalid(cur, indexes: list[str]) -> list[str]:
    if not indexes:
        return []
    cur.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = ANY(%s) AND c.relnamespace = current_schema()::regnamespace AND NOT (i.indisvalid AND i.indisready) "
        "ORDER BY c.relname",
        (indexes,),
    )
    return [row[0] for row in cur.fetchall()]


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL file, split on the semicolons that end them:
    not those inside quotes, quoted identifiers, dollar-quoted bodies or
    comments. Pieces holding only comments are dropped."""
    statements: list[str] = []
    start = 0
    code = False  # the current piece has something other than comments
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if ch in ("'", '"'):
            code = True
            i += 1
            while i < n:
                if sql[i] == ch and sql.startswith(ch * 2, i):
                    i += 2
                elif sql[i] == ch:
                    i += 1
                    break
                else:
                    i += 1
            continue
        tag = _DOLLAR_TAG.match(sql, i) if ch == "$" else None
        if tag:
            code = True
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            i = n if end < 0 else end + len(tag.group(0))
            continue
        if ch == ";":
            if code:
                statements.append(sql[start:i].strip())
            start, code = i + 1, False
        elif not ch.isspace():
            code = True
        i += 1
    if code:
        statements.append(sql[start:].strip())
    return statements


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
