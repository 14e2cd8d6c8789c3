"""The Postgres connection: opened once per container, reused, replaced
when broken.

Connections are autocommit: every statement the registry sends is a whole
operation (one call of a function in registry/sql/), so there is no
BEGIN/COMMIT round trip. Time-outs
are short and explicit so a dead database costs a couple of seconds and an
honest 503, not the function's whole time-out.

The connection sends no libpq ``options`` and runs no ``SET``: RDS Proxy
refuses a startup packet with ``options`` and pins a session that runs
``SET``. The server-side statement, lock and idle-in-transaction time-outs
are the role's defaults in this database (migration 0007); the client keeps
its own: the connect time-out, TCP keepalives and tcp_user_timeout.

A connection belongs to one thread (Lambda runs one; the local server may
run several), so ``threading.local`` holds it.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from registry.settings import get_settings


# "Any statement with a text size greater than 16 KB causes the proxy to pin
# the session" (RDS Proxy, all engine families).
PROXY_PIN_TEXT_BYTES = 16 * 1024


class DatabaseUnavailable(Exception):
    """Postgres could not be reached or did not answer in time (503).

    The message is ours; driver text never reaches a response body.
    """


def _dsn_from_settings() -> str:
    dsn = get_settings().database_url
    if not dsn:
        # In AWS the credentials come from Secrets Manager, not the environment.
        from registry import dbsecret

        if dbsecret.configured():
            return dbsecret.dsn()
        raise DatabaseUnavailable("DATABASE_URL is not configured")
    return dsn


# Where the DSN comes from. In AWS it is built from a Secrets Manager secret;
# set_dsn_provider() swaps the source without touching the callers.
_dsn_provider: Callable[[], str] = _dsn_from_settings
_local = threading.local()


def set_dsn_provider(provider: Callable[[], str]) -> None:
    global _dsn_provider
    _dsn_provider = provider
    close()


def _connect() -> psycopg2.extensions.connection:
    settings = get_settings()
    conn = psycopg2.connect(
        _dsn_provider(),
        connect_timeout=settings.pg_connect_timeout_seconds,
        application_name="workspace-registry",
        # TCP keepalives and tcp_user_timeout notice a server that vanished
        # mid-statement; the server cancels a slow statement itself (0007).
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=2,
        keepalives_count=2,
        tcp_user_timeout=settings.pg_socket_timeout_ms,
    )
    conn.autocommit = True
    return conn


def _closed_by_server(conn: psycopg2.extensions.connection) -> bool:
    """True when an idle connection's socket has something to read.

    An idle autocommit connection receives nothing unless the server ended
    it (RDS Proxy idle time-out, failover, pg_terminate_backend): then the
    socket holds the termination message or EOF. A zero-time select notices
    that without a round trip, so the request gets a fresh connection
    instead of a 503. A connection lost without a word (a partition) is
    still only found by using it.
    """
    try:
        readable, _, _ = select.select([conn], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def connection() -> psycopg2.extensions.connection:
    """This thread's connection, opened on first use or after a failure."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not conn.closed and _closed_by_server(conn):
        close()
        conn = None
    if conn is None or conn.closed:
        try:
            conn = _connect()
        except psycopg2.Error as err:
            raise DatabaseUnavailable("database connection failed") from err
        _local.conn = conn
    return conn


def close() -> None:
    conn = getattr(_local, "conn", None)
    _local.conn = None
    if conn is not None and not conn.closed:
        try:
            conn.close()
        except psycopg2.Error:
            pass


def fetch(sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run one statement (one round trip) and return its rows, by column name.

    Connection-level failures drop the connection, so the next call opens a
    fresh one, and raise DatabaseUnavailable. Errors that are the
    statement's own (bad data) propagate: input validation must prevent
    them, and a test that finds one has found a bug.
    """
    conn = connection()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = []
            if cur.description is not None:
                names = [column.name for column in cur.description]
                rows = [dict(zip(names, row)) for row in cur.fetchall()]
            sent = len(cur.query or b"")
        if sent > PROXY_PIN_TEXT_BYTES:
            # RDS Proxy pins a session that sends a statement over 16 KB of
            # text, until the session ends. psycopg2 sends parameters inline,
            # so only a large agent card does this: end the session now
            # rather than hold a database connection for this container.
            close()
        return rows
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as err:
        # OperationalError covers a lost server, a statement or lock
        # time-out and an admin shutdown. Whatever the statement did, it
        # did in one implicit transaction: all of it or none.
        close()
        raise DatabaseUnavailable("database unavailable") from err


@contextmanager
def transaction() -> Iterator[None]:
    """An explicit transaction for the multi-step, off-hot-path work (the
    sweep, the relay). Request handlers do not need one: each of their
    operations is a single statement."""
    fetch("BEGIN")
    try:
        yield
    except BaseException:
        conn = getattr(_local, "conn", None)
        if conn is not None and not conn.closed:
            try:
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")
            except psycopg2.Error:
                close()
        raise
    fetch("COMMIT")
