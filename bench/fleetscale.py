"""The operators' fleet view (GET /admin/...) at 1,000,000 workspaces: each
read as registry/fleet.py makes it, timed, and its statement EXPLAINed
(ANALYZE, BUFFERS) on the same data, so ``make bench`` prints which index
every read walks, how many rows it touched, and whether any fell back to a
sequential scan of a large table.

A database of its own (``registry_bench_fleet_<pid>``, migrated with the
same SQL) holds the fleet, inserted with one statement: statuses in
production-like shares (90 % online, 1 % degraded, 5 % offline, ...), card
names from seven families with a number, a skill per card (30 % "search",
one in 10,000 "rare-skill"), a tag (1 % "finance"), registrations spread
over the past year; the listing index (migration 0010) is filled the way
its triggers fill it, in one set-based statement with its indexes built
afterwards. The change feed holds 0.2 events per workspace written by 100
transactions, one "noisy" workspace with 5,000 of them, and a rare event
type.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import Any

from bench.common import drop_database, log, scratch_database, stdout_to_devnull, summary

DATABASE = f"registry_bench_fleet_{os.getpid()}"
BIG_TABLES = {"workspaces", "registry_fleet", "structure_events"}
NOISY_EVENTS = 5_000
EVENT_TRANSACTIONS = 100

_FLEET = """
INSERT INTO workspaces (id, name, role, status, url, agent_card, created_at, updated_at, last_heartbeat_at,
                        active_tasks, current_task)
SELECT md5('fleet-ws-' || g)::uuid, md5('fleet-ws-' || g)::uuid::text,
       (ARRAY['researcher', 'writer', 'finance', 'engineer', 'support', 'analyst', 'ops'])[1 + g %% 7],
       (CASE WHEN g %% 100 = 0 THEN 'degraded' WHEN g %% 100 < 6 THEN 'offline' WHEN g %% 100 < 8 THEN 'provisioning'
             WHEN g %% 100 = 8 THEN 'failed' WHEN g %% 200 = 9 THEN 'paused' WHEN g %% 200 = 109 THEN 'removed'
             ELSE 'online' END)::workspace_status,
       'http://localhost:8000',
       jsonb_build_object(
           'name', (ARRAY['research', 'billing', 'support', 'coder', 'translator', 'planner', 'triage'])[1 + g %% 7] || '-agent-' || g,
           'version', '1.0.0',
           'skills', jsonb_build_array(jsonb_build_object(
               'id', CASE WHEN g %% 10000 = 7 THEN 'rare-skill' WHEN g %% 10 < 3 THEN 'search' ELSE 'skill-' || (g %% 50) END,
               'tags', jsonb_build_array(CASE WHEN g %% 100 = 1 THEN 'finance' ELSE 'nlp' END)))),
       now() - g * interval '30 seconds', now(), now(), g %% 3, 'task ' || g
FROM generate_series(1, %(n)s) g
"""

# As the triggers would have written it; one in 1,000 changed in the last minute.
_LISTING = """
INSERT INTO registry_fleet (id, status, created_at, changed_at, terms)
SELECT id, status, created_at,
       CASE WHEN get_byte(decode(md5(id::text), 'hex'), 0) < 1 THEN now() - interval '1 minute' ELSE created_at END,
       registry_fleet_terms_v1(name, role, agent_card)
FROM workspaces
"""

_LISTING_INDEXES = ("idx_registry_fleet_order", "idx_registry_fleet_terms", "idx_registry_fleet_changed")

_EVENTS = """
INSERT INTO structure_events (event_type, workspace_id, payload, sequence, created_at, publish_pending, published_at)
SELECT CASE WHEN g %% 100000 = 5 THEN 'REGISTRY_SELF_PRESERVATION'
            WHEN g %% 100 < 70 THEN 'WORKSPACE_ONLINE' WHEN g %% 100 < 85 THEN 'WORKSPACE_DEGRADED' ELSE 'WORKSPACE_OFFLINE' END,
       CASE WHEN g %% 100000 = 5 THEN NULL ELSE md5('fleet-ws-' || (1 + g %% %(fleet)s))::uuid END,
       '{"reason": "bench"}'::jsonb, g, now() - (%(total)s - g) * interval '10 milliseconds', false, now()
FROM generate_series(%(first)s, %(last)s) g
"""

_NOISY = """
INSERT INTO structure_events (event_type, workspace_id, payload, sequence, created_at, publish_pending, published_at)
SELECT CASE WHEN g %% 2 = 0 THEN 'WORKSPACE_DEGRADED' ELSE 'WORKSPACE_ONLINE' END, %(ws)s::uuid,
       '{"reason": "flapping"}'::jsonb, g, now() - (%(n)s - g) * interval '1 second', false, now()
FROM generate_series(1, %(n)s) g
"""


def _rest_event(query: dict[str, str] | None = None) -> dict[str, Any]:
    return {"queryStringParameters": query or None, "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None}


@contextmanager
def _capturing():
    """Record the statement (and its parameters) each db.fetch sends."""
    from registry import db

    seen: list[tuple[str, Any]] = []
    real = db.fetch

    def fetch(sql, params=None):
        seen.append((sql, params))
        return real(sql, params)

    db.fetch = fetch
    try:
        yield seen
    finally:
        db.fetch = real


def _walk(node: dict[str, Any], out: list[dict[str, Any]]) -> None:
    out.append(node)
    for child in node.get("Plans", []):
        _walk(child, out)


def _plan_facts(plan: dict[str, Any]) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    _walk(plan["Plan"], nodes)
    scans = []
    read = 0
    seq_scans = []
    for node in nodes:
        kind = node["Node Type"]
        if "Scan" not in kind or kind in ("Function Scan", "CTE Scan", "Subquery Scan", "Result"):
            continue
        loops = node.get("Actual Loops", 1)
        if loops == 0:
            continue  # "never executed": the half of the list a one-time filter skipped
        rows = node.get("Actual Rows", 0) * loops + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        read += rows
        relation = node.get("Relation Name")
        index = node.get("Index Name")
        direction = " Backward" if node.get("Scan Direction") == "Backward" else ""
        label = f"{kind}{direction}" + (f" {index}" if index else f" on {relation}" if relation else "")
        scans.append({"scan": label, "rows": rows, "loops": loops})
        if kind == "Seq Scan" and relation in BIG_TABLES:
            seq_scans.append(relation)
    return {
        "execution_ms": plan.get("Execution Time"),
        "planning_ms": plan.get("Planning Time"),
        "scans": scans,
        "rows_read": read,
        "seq_scans_of_large_tables": seq_scans,
        "shared_buffers_hit": plan["Plan"].get("Shared Hit Blocks"),
        "shared_buffers_read": plan["Plan"].get("Shared Read Blocks"),
    }


def _scenarios(cur, fleet: int, noisy: str) -> list[tuple[str, Any]]:
    """(name, call) for every read; built after the fixture, so cursors
    point at real rows."""
    from registry import fleet as view

    rare_number = str(700_007 if fleet > 700_007 else max(fleet // 2, 1))
    cur.execute("SELECT count(*) FROM structure_events")
    (events,) = cur.fetchone()
    cur.execute(
        "SELECT feed_xid::text, created_at, id::text FROM structure_events ORDER BY feed_xid, created_at, id OFFSET %s LIMIT 1", (events // 2,)
    )
    xid, at, event_id = cur.fetchone()
    middle = view.FeedPosition(int(xid), at, event_id).encode()
    first_page = view.workspaces(_rest_event({"status": "online", "limit": "50"}))
    return [
        ("list: first page, no filter", lambda: view.workspaces(_rest_event({"limit": "50"}))),
        ("list: online, page 2 (cursor)", lambda: view.workspaces(_rest_event({"status": "online", "limit": "50", "cursor": first_page["next_cursor"]}))),
        ("list: degraded (1 %)", lambda: view.workspaces(_rest_event({"status": "degraded"}))),
        ("list: removed (0.5 %)", lambda: view.workspaces(_rest_event({"status": "removed"}))),
        ("list: q=agent (every card)", lambda: view.workspaces(_rest_event({"q": "agent"}))),
        (f"list: q={rare_number} (one card)", lambda: view.workspaces(_rest_event({"q": rare_number}))),
        ("list: q=research (1/7)", lambda: view.workspaces(_rest_event({"q": "research"}))),
        ("list: skill=rare-skill (0.01 %)", lambda: view.workspaces(_rest_event({"skill": "rare-skill"}))),
        ("list: skill=search, tag=finance", lambda: view.workspaces(_rest_event({"skill": "search", "tag": "finance"}))),
        ("list: degraded, q=billing", lambda: view.workspaces(_rest_event({"status": "degraded", "q": "billing"}))),
        ("list: changed in the last 5 min", lambda: view.workspaces(_rest_event({"updated_since": "5m"}))),
        ("detail: one workspace", lambda: view.workspace(noisy)),
        ("feed: from the start", lambda: view.events(_rest_event({"limit": "100"}))),
        ("feed: resume in the middle", lambda: view.events(_rest_event({"after": middle, "limit": "100"}))),
        ("feed: the last 100", lambda: view.events(_rest_event({"tail": "100"}))),
        (f"feed: one workspace ({NOISY_EVENTS:,} events)", lambda: view.events(_rest_event({"workspace_id": noisy}))),
        ("feed: a rare type", lambda: view.events(_rest_event({"type": "REGISTRY_SELF_PRESERVATION"}))),
        ("feed: one workspace and a type", lambda: view.events(_rest_event({"workspace_id": noisy, "type": "WORKSPACE_DEGRADED"}))),
        ("summary", view.summary),
    ]


def measure(database_url: str, fleet: int, reps: int) -> dict[str, Any]:
    import psycopg2
    from registry import db

    dsn = scratch_database(database_url, DATABASE)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET statement_timeout = 0")  # the fixture's own session: not the request role's 5 s
    out: dict[str, Any] = {"fleet": fleet, "reps": reps, "scenarios": []}
    try:
        log(f"fleet: inserting {fleet:,} workspaces and their listing rows")
        started = time.perf_counter()
        cur.execute("SET synchronous_commit = off")
        cur.execute("ALTER TABLE workspaces DISABLE TRIGGER registry_fleet_inserted")
        cur.execute(_FLEET, {"n": fleet})
        cur.execute("ALTER TABLE workspaces ENABLE TRIGGER registry_fleet_inserted")
        definitions = {}
        for index in _LISTING_INDEXES:
            cur.execute("SELECT pg_get_indexdef(%s::regclass)", (index,))
            definitions[index] = cur.fetchone()[0]
            cur.execute(f"DROP INDEX {index}")
        cur.execute(_LISTING)
        for index in _LISTING_INDEXES:
            cur.execute(definitions[index])
        events = max(fleet // 5, EVENT_TRANSACTIONS)
        per = events // EVENT_TRANSACTIONS
        log(f"fleet: {events:,} events in {EVENT_TRANSACTIONS} transactions, {NOISY_EVENTS:,} for one workspace")
        for t in range(EVENT_TRANSACTIONS):
            cur.execute(_EVENTS, {"fleet": fleet, "total": events, "first": t * per + 1, "last": (t + 1) * per})
        cur.execute("SELECT md5('fleet-ws-' || 42)::uuid::text")
        (noisy,) = cur.fetchone()
        cur.execute(_NOISY, {"ws": noisy, "n": NOISY_EVENTS})
        cur.execute("SET synchronous_commit = on")
        cur.execute("VACUUM ANALYZE workspaces")
        cur.execute("VACUUM ANALYZE registry_fleet")
        cur.execute("VACUUM ANALYZE structure_events")
        out["fixture_seconds"] = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM structure_events")
        out["events"] = cur.fetchone()[0]

        db.set_dsn_provider(lambda: dsn)
        for name, call in _scenarios(cur, fleet, noisy):
            with stdout_to_devnull(), _capturing() as seen:
                call()  # warm: plans, buffers
                sent = list(seen)
                times = []
                for _ in range(reps):
                    began = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - began)
            (sql, params) = sent[0]
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
            raw = cur.fetchone()[0]
            plan = (raw if isinstance(raw, list) else json.loads(raw))[0]
            cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, params)
            text = "\n".join(row[0] for row in cur.fetchall())
            entry = {"name": name, "statements": len(sent), "route": summary(times), **_plan_facts(plan), "plan": text}
            out["scenarios"].append(entry)
            log(f"fleet: {name}: {entry['route']['median_ms']:.2f} ms, {entry['rows_read']:,} rows read")
    finally:
        db.set_dsn_provider(db._dsn_from_settings)
        cur.close()
        conn.close()
        drop_database(database_url, DATABASE)
    out["all_on_an_index"] = not any(s["seq_scans_of_large_tables"] for s in out["scenarios"])
    out["slowest_median_ms"] = max(s["route"]["median_ms"] for s in out["scenarios"])
    out["most_rows_read"] = max(s["rows_read"] for s in out["scenarios"])
    return out
