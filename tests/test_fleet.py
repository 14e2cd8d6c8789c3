"""The operators' read API (GET /admin/...), through the four functions'
handlers with their sample events, against real Postgres and Redis: list
order, cursors, every filter, the change feed's order under a late commit,
bounded pages, the summary, what is never shown, IAM, and the listing index
kept by triggers (migration 0010)."""

from __future__ import annotations

import hashlib
import json
import threading

import psycopg2
import pytest

from conftest import Answer, invoke, new_id, sample_event

from devstack import harness


def admin(resource: str, query: dict | None = None, *, id: str | None = None, event: dict | None = None, api_format: str = "rest") -> Answer:
    """Call an admin route as API Gateway would (the sample event, IAM
    identity included), as a REST API or an HTTP API (payload 2.0) event."""
    if event is None:
        params = None if id is None else {"id": id}
        query = {k: v for k, v in (query or {}).items() if v is not None}
        event = harness.api_event(resource, api_format=api_format, params=params, query=query)
    return invoke(event)


def listed(query=None) -> list[str]:
    answer = admin("/admin/workspaces", query)
    assert answer.status == 200, answer.raw
    return [w["id"] for w in answer.body["workspaces"]]


def feed(after=None, **query) -> dict:
    answer = admin("/admin/events", {"after": after, **query})
    assert answer.status == 200, answer.raw
    return answer.body


def card(name, skills=(), **extra):
    return {"name": name, "version": "1.0.0", "skills": [{"id": s, "tags": t} for s, t in skills], **extra}


# ------------------------------------------------------------------ list


def test_newest_first_and_the_cursor_walks_every_page_once(registry):
    made = [registry.registered(card=card(f"agent {i}"))[0] for i in range(7)]
    seen, cursor, pages = [], None, 0
    for _ in range(10):  # bounded: a cursor that does not advance must fail, not hang
        answer = admin("/admin/workspaces", {"limit": "3", "cursor": cursor})
        assert answer.status == 200
        seen += [w["id"] for w in answer.body["workspaces"]]
        pages += 1
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made)) and pages == 3


def test_a_page_stays_put_while_the_fleet_changes(registry):
    """The order never moves a row: workspaces registered or changed after
    a cursor was handed out neither repeat nor hide rows behind it."""
    first = [registry.registered() for _ in range(4)]
    page = admin("/admin/workspaces", {"limit": "2"}).body
    newer = registry.registered()[0]
    assert registry.heartbeat(*first[0], runtime_state="wedged").status == 200  # changed: degraded
    rest = admin("/admin/workspaces", {"limit": "10", "cursor": page["next_cursor"]}).body
    assert [w["id"] for w in page["workspaces"]] == [first[3][0], first[2][0]]
    assert [(w["id"], w["status"]) for w in rest["workspaces"]] == [(first[1][0], "online"), (first[0][0], "degraded")]
    assert newer in listed()


def test_status_filter_and_removed_only_when_asked(registry, pg):
    healthy, t1 = registry.registered()
    wedged, t2 = registry.registered()
    removed, _ = registry.registered()
    assert registry.heartbeat(wedged, t2, runtime_state="wedged").status == 200
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (removed,))
    assert listed({"status": "degraded"}) == [wedged]
    assert listed({"status": "degraded,online"}) == [wedged, healthy]
    assert removed not in listed()
    assert listed({"status": "removed"}) == [removed]
    assert admin("/admin/workspaces", {"status": "bogus"}).status == 400
    item = admin("/admin/workspaces", {"status": "degraded"}).body["workspaces"][0]
    assert item["status"] == "degraded" and item["last_sample_error"] == "" and item["card_name"] == "agent"


def test_text_search_matches_word_prefixes_of_name_role_and_card_name(registry, pg):
    research, _ = registry.registered(card=card("Research-Agent v2"))
    billing, _ = registry.registered(card=card("billing bot"))
    other, _ = registry.registered(card={"name": 42})  # not a string: not searchable, still listed
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET role = 'Finance reviewer' WHERE id = %s", (billing,))
    assert listed({"q": "resea"}) == [research]
    assert listed({"q": "AGENT research"}) == [research]  # every word, any order, any case
    assert listed({"q": "research-ag"}) == [research]
    assert listed({"q": "fin"}) == [billing]  # the role
    assert listed({"q": research[:8]}) == [research]  # registry-made names are the id
    assert listed({"q": "nothing-like-it"}) == []
    assert other in listed()
    assert admin("/admin/workspaces", {"q": "!!!"}).status == 400
    assert admin("/admin/workspaces", {"q": "x" * 201}).status == 400


def test_skill_and_tag_filters_are_exact_and_combine(registry):
    a, _ = registry.registered(card=card("alpha", [("summarize", ["nlp", "docs"]), ("translate", ["nlp"])]))
    b, _ = registry.registered(card=card("beta", [("summarize", ["finance"])]))
    c, _ = registry.registered(card=card("gamma", [("Summarize", [])]))
    assert listed({"skill": "summarize"}) == [b, a]
    assert listed({"skill": "Summarize"}) == [c]
    assert listed({"skill": "summ"}) == []  # ids are exact, not prefixes
    assert listed({"tag": "nlp"}) == [a]
    assert listed({"skill": "summarize", "tag": "finance"}) == [b]
    assert listed({"skill": "summarize", "q": "alp"}) == [a]
    item = admin("/admin/workspaces", {"skill": "translate"}).body["workspaces"][0]
    assert item["skills"] == ["summarize", "translate"] and item["card_version"] == "1.0.0"


@pytest.mark.parametrize("scan", [1, 3, 1000])
def test_pages_are_exact_whichever_way_the_page_is_found(registry, pg, monkeypatch, scan):
    """ADMIN_WORKSPACES walks each status in order up to SCAN_PER_STATUS
    rows, else asks the filters' indexes: with a tiny walk every filtered
    page takes the second way. Paged through 4 at a time, each filter lists
    exactly the matching workspaces, newest first, once each."""
    import random

    from registry import fleet

    monkeypatch.setattr(fleet, "SCAN_PER_STATUS", scan)
    rng = random.Random(15)
    made = []
    for n in range(24):
        skills = [("search", ["web"])] if n % 3 == 0 else [("summarize", ["nlp"] if n % 2 else ["docs"])]
        ws, token = registry.registered(card=card(f"{'alpha' if n % 4 else 'beta'} agent {n}", skills))
        made.append(ws)
        if rng.random() < 0.3:
            registry.heartbeat(ws, token, runtime_state="wedged")
    with pg.cursor() as cur:
        cur.execute("UPDATE registry_fleet SET changed_at = now() - interval '1 day' WHERE id = ANY(%s::uuid[])", (made[::2],))
    filters = [{}, {"q": "beta"}, {"skill": "search"}, {"tag": "nlp"}, {"q": "alpha", "status": "degraded"}, {"updated_since": "1h"},
               {"skill": "summarize", "tag": "docs", "updated_since": "1h"}, {"q": "nothing"}]
    for query in filters:
        with pg.cursor() as cur:
            cur.execute(
                """SELECT f.id::text FROM registry_fleet f
                   WHERE f.status = ANY(%(statuses)s::workspace_status[])
                     AND (%(searching)s IS FALSE OR f.terms @@ registry_fleet_query_v1(%(q)s, %(skill)s, %(tag)s))
                     AND (%(since)s IS FALSE OR f.changed_at > now() - interval '1 hour')
                   ORDER BY f.created_at DESC, f.id DESC""",
                {
                    "statuses": [query["status"]] if "status" in query else list(fleet.LISTED_BY_DEFAULT),
                    "searching": any(k in query for k in ("q", "skill", "tag")),
                    "q": query.get("q"), "skill": query.get("skill"), "tag": query.get("tag"),
                    "since": "updated_since" in query,
                },
            )
            expected = [r[0] for r in cur.fetchall()]
        seen, cursor = [], None
        for _ in range(20):  # bounded: a cursor that does not advance must fail, not hang
            page = admin("/admin/workspaces", {**query, "limit": "4", "cursor": cursor}).body
            seen += [w["id"] for w in page["workspaces"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, (query, scan)
    assert len(expected) == 0 and len(made) == 24


@pytest.mark.parametrize(
    "agent_card",
    [
        {"name": "odd", "skills": "not a list"},
        {"name": "odd", "skills": [1, None, {"id": 5}, {"id": ""}, {"tags": "solo"}, {"id": ["nested"]}]},
        {"name": "odd", "skills": [{"id": "x" * 5000, "tags": ["y" * 3000]}]},
        {"name": "o" * 3000 + " odd", "skills": {"id": "object, not list"}},
        {"skills": [{"id": "it's a \\ quote & | ! :* (x)", "tags": ["a b", "'"]}]},
    ],
)
def test_any_card_is_stored_and_its_writes_never_fail(registry, agent_card):
    """The listing index is written inside register and update-card: a card
    of any shape must neither fail them nor be unsearchable by what it has."""
    ws, token = registry.registered(card=agent_card)
    assert registry.update_card(ws, agent_card, token).status == 200
    assert registry.heartbeat(ws, token, runtime_state="wedged").status == 200
    assert ws in listed({"status": "degraded"})
    if "quote" in json.dumps(agent_card):
        assert listed({"skill": "it's a \\ quote & | ! :* (x)"}) == [ws]
        assert listed({"tag": "'"}) == [ws]


def test_updated_since_follows_status_and_card_changes_not_telemetry(registry, pg):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE registry_fleet SET changed_at = now() - interval '2 hours' WHERE id = %s", (ws,))
    assert listed({"updated_since": "1h"}) == []
    assert registry.heartbeat(ws, token, uptime_seconds=99).status == 200  # steady: not a change
    assert listed({"updated_since": "1h"}) == []
    assert listed({"updated_since": "3h"}) == [ws]
    assert registry.heartbeat(ws, token, runtime_state="wedged").status == 200
    assert listed({"updated_since": "1h"}) == [ws]
    assert listed({"updated_since": "2999-01-01T00:00:00Z"}) == []
    assert listed({"updated_since": "2000-01-01"}) == [ws]
    assert admin("/admin/workspaces", {"updated_since": "yesterday"}).status == 400


@pytest.mark.parametrize(
    "query, reason",
    [
        ({"stauts": "degraded"}, "unknown query parameter 'stauts'"),
        ({"limit": "0"}, "limit: must be a whole number from 1 to 200"),
        ({"limit": "201"}, "limit: must be a whole number from 1 to 200"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage"}, "cursor is not one this API issued"),
        ({"cursor": "w1.bm90fGF1dWlk"}, "cursor is not one this API issued"),
        ({"q": "a\x00b"}, "NUL"),
        ({"limit": ["5", "6"]}, "repeated with different values"),
    ],
)
def test_bad_queries_are_400_with_the_reason(registry, query, reason):
    answer = admin("/admin/workspaces", query)
    assert answer.status == 400 and reason in answer.body["error"], answer.raw


def test_empty_parameters_count_as_not_given(registry):
    ws, _ = registry.registered()
    assert listed({"q": "", "status": "", "skill": "", "cursor": ""}) == [ws]


# ---------------------------------------------------------------- detail


def test_detail_has_the_record_redis_and_recent_events_and_no_secrets(registry, pg, env):
    env(LIVENESS_TTL_SECONDS=120)
    ws, token = registry.registered(card=card("detail agent", [("search", ["web"])]))
    assert registry.heartbeat(
        ws, token, runtime_state="wedged", sample_error="SDK init timeout",
        runtime_metadata={"idle_timeout_seconds": 600, "capabilities": {"streaming": True}},
    ).status == 200
    with pg.cursor() as cur:  # as the platform stores one for a workspace it provisions
        cur.execute("UPDATE workspaces SET registration_secret_hash = %s WHERE id = %s", (hashlib.sha256(b"s3cret").digest(), ws))
    answer = admin("/admin/workspaces/{id}", id=ws.upper())
    assert answer.status == 200, answer.raw
    body = answer.body
    record = body["workspace"]
    assert record["id"] == ws and record["status"] == "degraded" and record["agent_card"]["name"] == "detail agent"
    assert record["last_sample_error"] == "SDK init timeout" and record["registration_secret_set"] is True
    assert [t["prefix"] for t in record["live_tokens"]] == [token[:8]] and record["live_tokens"][0]["confirmed"] is True
    redis = body["redis"]
    assert redis["available"] and redis["liveness"]["value"] == "online" and 110 < redis["liveness"]["ttl_seconds"] <= 120
    assert redis["runtime"]["fields"]["idle_timeout_seconds"] == "600"
    assert redis["runtime"]["fields"]["capabilities"] == {"streaming": True}
    assert redis["url"]["value"] == "http://localhost:8000"
    assert [(e["event_type"], e["sequence"]) for e in body["recent_events"]] == [("WORKSPACE_DEGRADED", 2), ("WORKSPACE_ONLINE", 1)]
    assert body["recent_events"][0]["payload"]["runtime_state"] == "wedged"
    # Never a token hash or the registration secret's hash, in any form.
    with pg.cursor() as cur:
        cur.execute("SELECT token_hash FROM workspace_auth_tokens WHERE workspace_id = %s", (ws,))
        (token_hash,) = cur.fetchone()
    for secret in (bytes(token_hash).hex(), hashlib.sha256(b"s3cret").hexdigest(), token):
        assert secret not in answer.raw and secret.upper() not in answer.raw
    assert "hash" not in answer.raw


def test_detail_404_400_and_without_redis(registry, env):
    from registry import liveness

    assert admin("/admin/workspaces/{id}", id=new_id()).status == 404
    bad = admin("/admin/workspaces/{id}", id="not-a-uuid")
    assert bad.status == 400 and "UUID" in bad.body["error"]
    ws, _ = registry.registered()
    env(REDIS_URL="redis://127.0.0.1:1/0", REDIS_COOLDOWN_SECONDS=0)
    liveness.reset()
    answer = admin("/admin/workspaces/{id}", id=ws)
    assert answer.status == 200 and answer.body["redis"] == {"available": False}
    assert answer.body["workspace"]["status"] == "online"
    liveness.reset()


def test_detail_events_are_bounded_in_count_and_bytes(registry, monkeypatch):
    from registry import fleet

    ws, token = registry.registered()
    for i in range(4):
        assert registry.update_card(ws, {"name": "big", "blob": "x" * 40_000, "n": i}, token).status == 200
    monkeypatch.setattr(fleet, "PAGE_BYTES", 50_000)
    monkeypatch.setattr(fleet, "RECENT_EVENTS", 3)
    recent = admin("/admin/workspaces/{id}", id=ws).body["recent_events"]
    assert [e["sequence"] for e in recent] == [5, 4, 3]
    # the newest always carries its payload; the rest past the budget do not
    assert recent[0]["payload"]["agent_card"]["n"] == 3 and recent[1]["payload"] is not None and recent[2]["payload"] is None


# ------------------------------------------------------------------ feed


def test_feed_in_order_resumable_and_filtered(registry):
    a, ta = registry.registered()
    b, tb = registry.registered()
    registry.heartbeat(a, ta, runtime_state="wedged")
    registry.update_card(b, {"name": "b2"}, tb)
    page = feed()
    kinds = [(e["workspace_id"], e["event_type"], e["sequence"]) for e in page["events"]]
    assert kinds == [(a, "WORKSPACE_ONLINE", 1), (b, "WORKSPACE_ONLINE", 1), (a, "WORKSPACE_DEGRADED", 2), (b, "AGENT_CARD_UPDATED", 2)]
    assert not page["has_more"]
    assert feed(page["next_cursor"])["events"] == []
    assert feed(page["next_cursor"])["next_cursor"] == page["next_cursor"]
    # one event at a time, resuming from each event's own cursor, gives the same
    walked, cursor = [], None
    for _ in range(20):
        step = feed(cursor, limit="1")
        walked += step["events"]
        cursor = step["next_cursor"]
        if not step["has_more"]:
            break
    assert [e["event_id"] for e in walked] == [e["event_id"] for e in page["events"]]
    assert [e["event_type"] for e in feed(type="WORKSPACE_DEGRADED")["events"]] == ["WORKSPACE_DEGRADED"]
    assert [e["event_type"] for e in feed(workspace_id=b)["events"]] == ["WORKSPACE_ONLINE", "AGENT_CARD_UPDATED"]
    assert feed(workspace_id=b, type="WORKSPACE_DEGRADED")["events"] == []
    later = feed(page["events"][1]["cursor"])["events"]
    assert [e["event_id"] for e in later] == [e["event_id"] for e in page["events"][2:]]


def test_the_tail_then_follow(registry):
    ws, token = registry.registered()
    for n in range(3):
        registry.update_card(ws, {"name": "v", "n": n}, token)
    tail = feed(tail="2")
    assert [e["payload"]["agent_card"]["n"] for e in tail["events"]] == [1, 2] and not tail["has_more"]
    assert feed(tail["next_cursor"])["events"] == []
    registry.update_card(ws, {"name": "v", "n": 3}, token)
    assert [e["payload"]["agent_card"]["n"] for e in feed(tail["next_cursor"])["events"]] == [3]
    # nothing of this type yet: following from where the tail points misses nothing
    none = feed(tail="5", type="WORKSPACE_OFFLINE")
    assert none["events"] == []
    registry.deregister(ws, token)
    assert [e["event_type"] for e in feed(none["next_cursor"], type="WORKSPACE_OFFLINE")["events"]] == ["WORKSPACE_OFFLINE"]
    refused = admin("/admin/events", {"tail": "2", "after": tail["next_cursor"]})
    assert refused.status == 400 and refused.body["error"] == "after and tail: give one of them"
    assert admin("/admin/events", {"tail": "0"}).status == 400


def test_an_event_that_commits_late_is_never_skipped(registry, servers, pg):
    """Transaction A records an event first (earlier time, smaller xid) but
    commits after B. A follower that read B must still get A: the feed holds
    back everything from A's transaction on until A ends, and then serves A
    after the cursor it already has. An order by time alone would have
    handed out a cursor past A and skipped it for ever."""
    ws, token = registry.registered()
    other, other_token = registry.registered()
    start = feed()["next_cursor"]

    slow = psycopg2.connect(servers.database_url)
    try:
        with slow.cursor() as cur:  # A: recorded, not committed
            cur.execute("SELECT id FROM registry_record_event_v2(%s, 'LATE_EVENT', '{}'::jsonb, NULL)", (ws,))
            (late_id,) = cur.fetchone()
        assert registry.heartbeat(other, other_token, runtime_state="wedged").status == 200  # B commits

        held = feed(start)
        assert held["events"] == [] and held["next_cursor"] == start  # B waits behind A
        slow.commit()
    finally:
        slow.close()
    served = feed(start)["events"]
    assert [e["event_type"] for e in served] == ["LATE_EVENT", "WORKSPACE_DEGRADED"]
    assert served[0]["event_id"] == str(late_id)
    with pg.cursor() as cur:  # by time alone, A is older than B: a time cursor after B skips it
        cur.execute("SELECT event_type FROM structure_events WHERE id = ANY(%s::uuid[]) ORDER BY created_at", ([e["event_id"] for e in served],))
        assert [r[0] for r in cur.fetchall()] == ["LATE_EVENT", "WORKSPACE_DEGRADED"]


def test_feed_orders_transaction_ids_as_numbers(registry, pg):
    """xid 999 before 1000 (as text, "1000" < "999"): two ids either side
    of the largest power of ten below the current one."""
    ws, _ = registry.registered()
    with pg.cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        (current,) = cur.fetchone()
        power = 10 ** (len(str(current - 1)) - 1)
        assert 10 <= power < current
        for xid, kind in ((power, "SECOND"), (power - 1, "FIRST")):
            cur.execute("INSERT INTO structure_events (event_type, workspace_id, feed_xid) VALUES (%s, %s, %s::text::xid8)", (kind, ws, xid))
    assert [e["event_type"] for e in feed()["events"]][:2] == ["FIRST", "SECOND"]
    first = feed(limit="1")
    assert [e["event_type"] for e in feed(first["next_cursor"], limit="1")["events"]] == ["SECOND"]


def test_feed_waits_for_a_writer_then_serves_in_commit_safe_order(registry, servers):
    """Many writers at once: a follower polling throughout sees every
    event exactly once, whatever the interleaving."""
    fleet = [registry.registered() for _ in range(4)]
    cursor = feed()["next_cursor"]
    seen: list[str] = []
    stop = threading.Event()

    def writer(ws, token):
        conn = psycopg2.connect(servers.database_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            for i in range(15):
                cur.execute("SELECT registry_record_event_v2(%s, 'TICK', %s::jsonb, NULL)", (ws, json.dumps({"i": i})))
        conn.close()

    threads = [threading.Thread(target=writer, args=pair) for pair in fleet]
    for t in threads:
        t.start()
    while not stop.is_set():
        done = not any(t.is_alive() for t in threads)
        page = feed(cursor, limit="7")
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if done and not page["events"]:
            stop.set()
    assert len(seen) == len(set(seen)) == 60


def test_feed_pages_are_bounded_by_bytes(registry, monkeypatch):
    from registry import fleet

    ws, token = registry.registered()
    for i in range(5):
        registry.update_card(ws, {"name": "big", "blob": "x" * 30_000, "n": i}, token)
    monkeypatch.setattr(fleet, "PAGE_BYTES", 70_000)
    page = feed(type="AGENT_CARD_UPDATED")
    assert [e["payload"]["agent_card"]["n"] for e in page["events"]] == [0, 1, 2] and page["has_more"]
    rest = feed(page["next_cursor"], type="AGENT_CARD_UPDATED")
    assert [e["payload"]["agent_card"]["n"] for e in rest["events"]] == [3, 4] and not rest["has_more"]
    monkeypatch.setattr(fleet, "PAGE_BYTES", 10)  # a page always holds one
    assert len(feed(type="AGENT_CARD_UPDATED")["events"]) == 1


@pytest.mark.parametrize(
    "query, reason",
    [
        ({"after": "e1.garbage"}, "cursor is not one this API issued"),
        ({"after": "w1.MjAyNHwx"}, "cursor is not one this API issued"),
        ({"workspace_id": "nope"}, "workspace_id: must be a UUID"),
        ({"limit": "501"}, "limit: must be a whole number from 1 to 500"),
        ({"since": "1h"}, "unknown query parameter 'since'"),
        ({"type": "T" * 129}, "type: at most 128 characters"),
    ],
)
def test_bad_feed_queries_are_400(registry, query, reason):
    answer = admin("/admin/events", query)
    assert answer.status == 400 and reason in answer.body["error"], answer.raw


# --------------------------------------------------------------- summary


def test_summary_counts_backlog_and_the_feed_head(registry, pg, monkeypatch):
    from registry import fleet

    for _ in range(3):
        registry.registered()
    ws, token = registry.registered()
    registry.heartbeat(ws, token, runtime_state="wedged")
    with pg.cursor() as cur:
        cur.execute("UPDATE structure_events SET publish_pending = true, created_at = now() - interval '90 seconds' WHERE workspace_id = %s", (ws,))
    body = admin("/admin/summary").body
    assert body["workspaces"]["online"] == {"count": 3, "estimated": False}
    assert body["workspaces"]["degraded"] == {"count": 1, "estimated": False}
    assert body["workspaces"]["removed"] == {"count": 0, "estimated": False} and body["fleet"] == 4
    assert body["self_preservation"]["state"] == "normal"
    assert body["events"]["pending"] == 2 and 89 < body["events"]["oldest_pending_age_seconds"] < 120
    head = body["events"]["cursor"]
    assert feed(head)["events"] == []
    registry.update_card(ws, {"name": "new"}, token)
    assert [e["event_type"] for e in feed(head)["events"]] == ["AGENT_CARD_UPDATED"]
    # beyond the exact cap, the planner's estimate (after ANALYZE) and the flag
    monkeypatch.setattr(fleet, "EXACT_COUNT", 2)
    with pg.cursor() as cur:
        cur.execute("ANALYZE registry_fleet")
    online = admin("/admin/summary").body["workspaces"]["online"]
    assert online["estimated"] is True and online["count"] >= 2


def test_summary_on_an_empty_registry(registry):
    body = admin("/admin/summary").body
    assert body["fleet"] == 0 and body["events"]["pending"] == 0 and body["events"]["oldest_pending_age_seconds"] is None
    assert feed(body["events"]["cursor"])["events"] == []


# ------------------------------------------------------------ access, cost


def test_http_api_events_are_answered_the_same(registry):
    """Payload 2.0 (ApiType=HTTP): the query string, repeats joined with
    commas, the path parameter, the IAM caller under authorizer.iam."""
    healthy, _ = registry.registered(card=card("two-oh"))
    wedged, token = registry.registered()
    registry.heartbeat(wedged, token, runtime_state="wedged")
    listed_2 = admin("/admin/workspaces", {"status": ["degraded", "online"], "q": "two"}, api_format="http")
    assert listed_2.status == 200 and [w["id"] for w in listed_2.body["workspaces"]] == [healthy]
    assert admin("/admin/workspaces", {"status": ["degraded", "online"]}, api_format="http").body["workspaces"][0]["id"] == wedged
    assert admin("/admin/workspaces", {"limit": ["5", "6"]}, api_format="http").status == 400
    detail = admin("/admin/workspaces/{id}", id=wedged, api_format="http")
    assert detail.status == 200 and detail.body["workspace"]["status"] == "degraded"
    assert admin("/admin/events", {"workspace_id": wedged}, api_format="http").body["events"][-1]["event_type"] == "WORKSPACE_DEGRADED"
    assert admin("/admin/summary", api_format="http").body["fleet"] == 2


def test_iam_is_required_when_configured(registry, env):
    env(ADMIN_AUTH="iam")
    assert admin("/admin/summary").status == 200  # the sample event carries the IAM identity
    unsigned = sample_event("admin_summary.json")
    unsigned["requestContext"]["identity"] = {"sourceIp": "198.51.100.7", "userAgent": "curl/8"}
    answer = admin("/admin/summary", event=unsigned)
    assert answer.status == 403 and answer.body == {"error": "IAM authorization required"}
    assert admin("/admin/summary", api_format="http").status == 200  # authorizer.iam
    http_unsigned = sample_event("admin_summary.json", "http")
    del http_unsigned["requestContext"]["authorizer"]
    assert admin("/admin/summary", event=http_unsigned).status == 403
    env(ADMIN_AUTH="none")
    assert admin("/admin/summary", event=unsigned).status == 200


def test_round_trips(registry, counts):
    ws, token = registry.registered()
    for route, kwargs, expected in [
        ("/admin/workspaces", {"query": {"q": "agent", "status": "online,degraded"}}, (1, 0)),
        ("/admin/workspaces/{id}", {"id": ws}, (1, 1)),
        ("/admin/events", {"query": {"workspace_id": ws}}, (1, 0)),
        ("/admin/summary", {}, (1, 0)),
    ]:
        counts.reset()
        assert admin(route, **kwargs).status == 200
        assert (counts.pg, counts.redis) == expected, route


# ------------------------------------------------- the listing index (0010)


def test_the_listing_index_follows_every_writer_and_only_real_changes(registry, pg, servers):
    """The platform writes workspaces too, maybe as a role with no rights on
    registry_fleet: its writes succeed and are listed (SECURITY DEFINER). A
    steady heartbeat does not touch the index."""
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("SELECT changed_at FROM registry_fleet WHERE id = %s", (ws,))
        (before,) = cur.fetchone()
    assert registry.heartbeat(ws, token, uptime_seconds=5).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT changed_at FROM registry_fleet WHERE id = %s", (ws,))
        assert cur.fetchone() == (before,)
        cur.execute("DROP ROLE IF EXISTS platform_app")
        cur.execute("CREATE ROLE platform_app")
        cur.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON workspaces TO platform_app")
    platform = psycopg2.connect(servers.database_url)
    platform_ws = new_id()
    try:
        with platform, platform.cursor() as cur:
            cur.execute("SET ROLE platform_app")
            cur.execute("INSERT INTO workspaces (id, name, role, status) VALUES (%s, 'Provisioned by platform', 'planner', 'provisioning')", (platform_ws,))
            cur.execute("UPDATE workspaces SET status = 'paused' WHERE id = %s", (ws,))
    finally:
        platform.close()
        with pg.cursor() as cur:
            cur.execute("DROP OWNED BY platform_app")
            cur.execute("DROP ROLE platform_app")
    assert listed({"q": "provisioned planner"}) == [platform_ws]
    assert listed({"status": "paused"}) == [ws]
    with pg.cursor() as cur:
        cur.execute("DELETE FROM workspaces WHERE id = %s", (platform_ws,))
        cur.execute("SELECT count(*) FROM registry_fleet WHERE id = %s", (platform_ws,))
        assert cur.fetchone() == (0,)
