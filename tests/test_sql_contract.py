"""The request functions' contract between Python and SQL.

- statements.py calls only functions that registry/sql/ defines, and reads
  each one's row by name into a dataclass whose fields are exactly the
  function's result columns (a column renamed, added or dropped fails here,
  not as a shifted tuple in production);
- each registry/sql/<operation>.sql defines registry_<operation>_vN;
- the previous release's calls (registry_*_v1, verbatim below) keep working
  after this release's migrations: during a deploy, containers of both
  releases run against the same database.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from conftest import new_id

SQL = Path(__file__).resolve().parent.parent / "layers" / "shared" / "registry" / "sql"


def result_columns(pg, function: str) -> list[str]:
    with pg.cursor() as cur:
        cur.execute(
            """SELECT array_agg(name ORDER BY n) FROM pg_proc p,
                      unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(name, mode, n)
               WHERE p.proname = %s AND mode = 't'""",
            (function,),
        )
        return cur.fetchone()[0]


def test_statements_read_exactly_the_columns_their_function_answers(pg, servers):
    from registry import statements

    pairs = [
        (statements.REGISTER, statements.Registered),
        (statements.HEARTBEAT, statements.Heartbeat),
        (statements.UPDATE_CARD, statements.CardUpdated),
        (statements.DEREGISTER, statements.Deregistered),
        (statements.DISCOVER, statements.Discovered),
        (statements.PEERS, statements.Peers),
        (statements.CHECK_ACCESS, statements.AccessChecked),
    ]
    for sql, result in pairs:
        [function] = re.findall(r"registry_\w+_v\d+", sql)
        assert sorted(result_columns(pg, function)) == sorted(f.name for f in dataclasses.fields(result)), function


def test_every_function_called_is_defined_in_registry_sql():
    from registry import statements

    source = Path(statements.__file__).read_text()
    called = set(re.findall(r"registry_\w+_v\d+(?=\()", source))
    defined = set()
    for path in SQL.glob("*.sql"):
        text = path.read_text()
        defined |= set(re.findall(r"CREATE OR REPLACE FUNCTION (registry_\w+_v\d+)\(", text))
        # one file per operation, named after it
        own = re.findall(r"CREATE OR REPLACE FUNCTION registry_(\w+)_v\d+\(", text)
        assert path.stem in own or path.stem in ("authorize", "event"), f"{path.name} defines {own}"
    # The fleet view's search functions live in their numbered migration
    # (0010), not in sql/: the listing index stores what they compute, so
    # they are never edited in place.
    for path in (SQL.parent / "migrations").glob("*.sql"):
        defined |= set(re.findall(r"CREATE OR REPLACE FUNCTION (registry_fleet_\w+_v\d+)\(", path.read_text()))
    assert called and called <= defined, called - defined


def test_reading_a_row_refuses_drift():
    from registry import statements

    row = {f.name: None for f in dataclasses.fields(statements.CardUpdated)}
    statements.read(statements.CardUpdated, row)
    with pytest.raises(RuntimeError, match="expected"):
        statements.read(statements.CardUpdated, {**row, "has_live_token": True})
    with pytest.raises(RuntimeError, match="expected"):
        statements.read(statements.CardUpdated, {k: v for k, v in row.items() if k != "outcome"})


# The previous release's statements, verbatim (statements.py before the
# request functions' second version).
V1_REGISTER = """
SELECT * FROM registry_register_v1(
    %(id)s, %(url)s, %(card)s, %(token_hash)s, %(new_token_hash)s, %(new_token_prefix)s,
    %(secret_hash)s, %(require_secret)s, %(acks)s::uuid[])
"""
V1_HEARTBEAT = """
SELECT * FROM registry_heartbeat_v1(
    %(id)s, %(token_hash)s, %(require_token)s, %(rules)s, %(error_rate)s, %(sample_error)s,
    %(active_tasks)s, %(uptime_seconds)s, %(current_task)s, %(monthly_spend)s, %(acks)s::uuid[])
"""
V1_UPDATE_CARD = """
SELECT * FROM registry_update_card_v1(%(id)s, %(token_hash)s, %(require_token)s, %(card)s, %(acks)s::uuid[])
"""
V1_DEREGISTER = """
SELECT * FROM registry_deregister_v1(%(id)s, %(token_hash)s, %(require_token)s, %(acks)s::uuid[])
"""


def test_the_previous_release_keeps_working_after_this_migration(pg, registry):
    """A container of the previous release, mid-deploy: its calls answer as
    they always did, and the two releases interoperate on one workspace."""
    from registry import status, tokens

    ws = new_id()
    old = tokens.mint()
    with pg.cursor() as cur:

        def call(sql, **params):
            cur.execute(sql, {"acks": [], **params})
            return cur.fetchone()

        has_live, token_ok, _, _, prior, url, minted, event_id, event_type, _, _ = call(
            V1_REGISTER, id=ws, url="http://localhost:1", card=json.dumps({"v": 1}), token_hash=None,
            new_token_hash=old.sha256, new_token_prefix=old.prefix, secret_hash=None, require_secret=False,
        )
        assert (has_live, token_ok, prior, url, minted, event_type) == (False, False, None, "http://localhost:1", True, "WORKSPACE_ONLINE")
        rules = json.dumps(status.transition_table(status.Signal(error_rate=0.9)))
        row = call(
            V1_HEARTBEAT, id=ws, token_hash=old.sha256, require_token=False, rules=rules, error_rate=0.9, sample_error="x",
            active_tasks=0, uptime_seconds=1, current_task="", monthly_spend=None, acks=[str(event_id)],
        )
        assert row[:5] == ("online", True, True, "", "degraded") and row[6] == "WORKSPACE_DEGRADED"
        assert call(V1_UPDATE_CARD, id=ws, token_hash=old.sha256, require_token=False, card=json.dumps({"v": 2}))[:4] == ("degraded", True, True, True)
        # the v1 ack still marks what the old container published
        cur.execute("SELECT publish_pending FROM structure_events WHERE id = %s", (event_id,))
        assert cur.fetchone() == (False,)

    # This release's code accepts the token the old one minted (confirmed:
    # only tokens this release mints start unconfirmed) ...
    assert registry.heartbeat(ws, old.plaintext, error_rate=0.0).status == 200
    assert registry.update_card(ws, {"v": 3}, old.plaintext).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT status::text, agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("online", {"v": 3})
        # ... and the old one still deregisters what the new one wrote.
        cur.execute(V1_DEREGISTER, {"id": ws, "token_hash": old.sha256, "require_token": False, "acks": []})
        assert cur.fetchone()[:4] == ("online", True, True, "offline")
