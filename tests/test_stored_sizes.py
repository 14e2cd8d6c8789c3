"""Sizes are decided on what is stored and published, not only on what was
sent (registry/limits.py).

Postgres keeps JSON numbers as NUMERIC and prints them in full: before this,
a 65,436-byte register holding 10,000 copies of 1e308 answered 200, stored a
3.39 MB card and recorded a 3,386,534-byte event that PutEvents refused and
the relay dropped. Here the worst body each route accepts is built at the
limits and the stored card, the recorded event and the published entry are
measured.
"""

import json

import pytest

from conftest import new_id

PUT_EVENTS_MAX_ENTRY = 256 * 1024


def compact(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def entry_size(envelope) -> int:
    """PutEvents' size of what was published (its rule: UTF-8 bytes of Source,
    DetailType, Detail and EventBusName, 14 for Time)."""
    return 14 + sum(len(x.encode()) for x in ("workspace-registry", envelope["detail-type"], json.dumps(envelope["detail"], separators=(",", ":"), ensure_ascii=False), "workspace-registry"))


def worst_card(limit_bytes: int) -> dict:
    """The card with the most 40-digit numbers (sent as 5-byte 1e+39) whose
    stored form is still within ``limit_bytes``."""
    from registry import limits

    n = 1
    while limits.stored_size({"n": [1e39] * (n + 1)}) <= limit_bytes:
        n += 1
    return {"n": [1e39] * n}


def test_stored_number_is_what_postgres_prints(pg, servers):
    from registry import limits

    for value in (1e308, 1.5e-10, 1.0, 0.1, 12345678901234567890, 1e39, 5e-324, 2.5e-05, 7, -3.25):
        with pg.cursor() as cur:
            cur.execute("SELECT (%s::jsonb ->> 0)", (json.dumps([value]),))
            assert cur.fetchone()[0] == limits.stored_number(value), value


def test_the_issue_body_is_refused_naming_the_field(registry, pg, aws):
    ws = new_id()
    # as sent in the issue: bare 1e308, compact, just under the 64 KiB body limit
    raw = '{"id":"%s","url":"http://localhost:1","agent_card":{"a":[%s]}}' % (ws, ",".join(["1e308"] * 10_800))
    assert 64_000 < len(raw) <= 65_536
    a = registry.register(raw=raw)
    assert a.status == 400
    assert a.body["error"] == "agent_card.a[0]: number is 309 digits once stored (at most 40); send it as a string"
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == (0,)
    assert aws.received() == []


@pytest.mark.parametrize("number, ok", [(10**39, True), (10**40, False), (1e-38, True), (1e-39, False), (1.2345678901234567e-20, True)])
def test_each_number_is_measured_as_stored(registry, number, ok):
    ws, token = registry.registered()
    a = registry.update_card(ws, {"skills": [{"x": number}]}, token)
    assert a.status == (200 if ok else 400), a.raw
    if not ok:
        assert a.body["error"].startswith("agent_card.skills[0].x: number is ")


def test_a_huge_integer_answers_with_the_rule_not_python_internals(registry):
    raw = json.dumps({"id": new_id(), "url": "http://localhost:1", "agent_card": {}}).replace("{}", '{"n": ' + "9" * 5000 + "}")
    a = registry.register(raw=raw)
    assert a.status == 400
    assert a.body["error"] == "body contains a 5000-digit number (at most 40 digits once stored); send it as a string"
    assert "sys." not in a.raw and "int_max_str_digits" not in a.raw


@pytest.mark.parametrize("route", ["register", "update-card"])
def test_a_card_that_grows_past_the_limit_once_stored_is_refused(registry, pg, aws, route):
    from registry import limits

    card = worst_card(limits.MAX_STORED_CARD_BYTES)
    card["n"].append(1e39)  # one number more: the body is ~11 KB, stored it is over 64 KiB
    body = json.dumps({"id": new_id(), "url": "http://localhost:1", "agent_card": card})
    assert len(body) < 16 * 1024
    if route == "register":
        ws = new_id()
        a = registry.register(ws, card=card)
    else:
        ws, token = registry.registered(card={"v": 1})
        aws.received()
        a = registry.update_card(ws, card, token)
    assert a.status == 413
    assert a.body["error"].startswith("agent_card is ") and a.body["error"].endswith(f"bytes once stored (numbers written out in full); at most {limits.MAX_STORED_CARD_BYTES:,}")
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM structure_events WHERE workspace_id = %s AND event_type <> 'WORKSPACE_ONLINE' OR (workspace_id = %s AND %s = 'register')", (ws, ws, route))
        assert cur.fetchone() == (0,)
    assert aws.received() == []


@pytest.mark.parametrize("route", ["register", "update-card"])
def test_the_worst_accepted_card_stays_within_every_limit(registry, pg, aws, route):
    from registry import limits

    card = worst_card(limits.MAX_STORED_CARD_BYTES)
    url = "http://" + "a" * 60 + ".example.com/" + "p" * 1900  # near the 2048 URL limit
    if route == "register":
        ws = new_id()
        a = registry.register(ws, url=url, card=card, dns={"a" * 60 + ".example.com": ["8.8.8.8"]})
    else:
        ws, token = registry.registered()
        aws.received()
        a = registry.update_card(ws, card, token)
    assert a.status == 200, a.raw
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        stored = cur.fetchone()[0]
        cur.execute("SELECT payload FROM structure_events WHERE workspace_id = %s ORDER BY sequence DESC LIMIT 1", (ws,))
        recorded = cur.fetchone()[0]
    assert compact(stored) <= limits.MAX_STORED_CARD_BYTES < compact(stored) + 42  # the limit is the real boundary
    assert compact(recorded) <= limits.MAX_STORED_CARD_BYTES + 2200
    [published] = [e for e in aws.received() if e["detail"]["workspace_id"] == ws]
    assert entry_size(published) < PUT_EVENTS_MAX_ENTRY / 3


def test_the_worst_heartbeat_keeps_its_events_small(registry, aws):
    """sample_error and current_task are cut to 4096 characters; at four
    UTF-8 bytes each the transition and task events still fit easily."""
    ws, token = registry.registered()
    aws.received()
    wide = "\U0001F600" * 4096
    raw = json.dumps({"workspace_id": ws, "error_rate": 0.9, "sample_error": wide, "current_task": wide}, ensure_ascii=False)
    assert len(raw.encode()) <= 65_536
    a = registry.heartbeat_raw(raw, token)
    assert a.status == 200
    published = aws.received()
    assert {e["detail-type"] for e in published} == {"WORKSPACE_DEGRADED", "TASK_UPDATED"}
    assert all(entry_size(e) < 20 * 1024 for e in published)
