"""No input, however odd, yields a 500: every case answers 4xx with a
reason, and stored data is untouched."""

import base64
import json

import pytest

from conftest import body_routes, call, new_id, sample_event, invoke

from devstack import harness


def assert_refused(a, status=400):
    assert a.status == status, a.raw
    assert isinstance(a.body["error"], str) and a.body["error"]


def deep(n):
    v = {}
    for _ in range(n):
        v = {"a": v}
    return v


RAW_BODIES = [
    "",
    "null",
    "[]",
    "1",
    '"string"',
    "{",
    '{"workspace_id": }',
    "{}",
    '{"id": NaN}',
    '{"error_rate": Infinity, "workspace_id": "x"}',
    "[" * 20000 + "]" * 20000,
    '{"a":' * 5000 + "1" + "}" * 5000,
    '{"active_tasks": ' + "9" * 5000 + "}",
    "\ufeff{}",
    '{"id": "\\ud800"}',
]


@pytest.mark.parametrize("route", body_routes())
@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_odd_raw_bodies(registry, route, raw):
    a = call(route, None, raw=raw)
    assert 400 <= a.status < 500, (raw[:40], a.raw)
    assert a.status != 413 or len(raw) > 65536


def test_missing_body(registry):
    event = sample_event("heartbeat.json")
    event["body"] = None
    assert_refused(invoke(event))


def test_oversized_body_is_413(registry):
    ws = new_id()
    a = call("/registry/register", {"id": ws, "url": "http://localhost:1", "agent_card": {"x": "y" * 70_000}})
    assert_refused(a, 413)
    assert "larger than" in a.body["error"]


def test_body_just_under_the_limit_is_accepted(registry, pg):
    ws = new_id()
    body = {"id": ws, "url": "http://localhost:1", "agent_card": {"x": ""}}
    room = 64 * 1024 - len(json.dumps(body))
    body["agent_card"]["x"] = "y" * room
    assert call("/registry/register", body).status == 200


def test_base64_bodies(registry):
    ws = new_id()
    body = json.dumps({"id": ws, "url": "http://localhost:1", "agent_card": {}}).encode()
    event = sample_event("register.json")
    event["isBase64Encoded"] = True
    event["body"] = base64.b64encode(body).decode()
    assert invoke(event).status == 200
    event["body"] = "!!!not base64"
    assert_refused(invoke(event))
    event["body"] = base64.b64encode(b"\xff\xfe{}").decode()
    assert "UTF-8" in invoke(event).body["error"]
    event["body"] = base64.b64encode(b"x" * 70_000).decode()
    assert invoke(event).status == 413


@pytest.mark.parametrize(
    "field,value",
    [
        ("sample_error", "bad\x00nul"),
        ("current_task", "\x00"),
        ("runtime_state", "wedged\x00"),
        ("sample_error", "\ud800 lone surrogate"),
        ("error_rate", 1.5),
        ("error_rate", -0.1),
        ("error_rate", "0.5"),
        ("error_rate", True),
        ("active_tasks", -1),
        ("active_tasks", 2**31),
        ("active_tasks", 2**64),
        ("active_tasks", 1.5),
        ("active_tasks", "3"),
        ("uptime_seconds", 2**31),
        ("uptime_seconds", [1]),
        ("monthly_spend", 2**63),
        ("monthly_spend", -(2**63) - 1),
        ("monthly_spend", 1.5),
        ("runtime_state", "x" * 100),
        ("runtime_state", 5),
        ("runtime_metadata", []),
        ("runtime_metadata", {"idle_timeout_seconds": 2**40}),
        ("runtime_metadata", {"idle_timeout_seconds": "600"}),
        ("runtime_metadata", {"capabilities": ["heartbeat"]}),
        ("runtime_metadata", {"capabilities": {"heartbeat": "yes"}}),
        ("runtime_metadata", {"capabilities": {f"c{i}": True for i in range(100)}}),
        ("workspace_id", None),
        ("workspace_id", 12345),
        ("workspace_id", "ws-123"),
    ],
)
def test_odd_heartbeat_fields_refused_and_row_untouched(registry, pg, field, value):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("SELECT w.*::text FROM workspaces w WHERE id = %s", (ws,))
        before = cur.fetchone()
    body = {"workspace_id": ws, field: value}
    a = call("/registry/heartbeat", body, token=token)
    assert_refused(a)
    with pg.cursor() as cur:
        cur.execute("SELECT w.*::text FROM workspaces w WHERE id = %s", (ws,))
        assert cur.fetchone() == before


def test_float_overflow_literal(registry):
    ws, token = registry.registered()
    a = call("/registry/heartbeat", None, token=token, raw='{"workspace_id": "%s", "error_rate": 1e400}' % ws)
    assert_refused(a)
    assert "out of range" in a.body["error"]


def test_null_optional_fields_mean_not_sent(registry, pg):
    ws, token = registry.registered()
    body = {"workspace_id": ws, "error_rate": None, "sample_error": None, "active_tasks": None, "current_task": None, "monthly_spend": None, "runtime_metadata": None}
    assert call("/registry/heartbeat", body, token=token).status == 200


def test_unknown_fields_are_ignored(registry):
    ws = new_id()
    body = {"id": ws, "url": "http://localhost:1", "agent_card": {}, "delivery_mode": "push", "kind": "agent", "whatever": [1, 2]}
    registered = call("/registry/register", body)
    assert registered.status == 200
    beat = {"workspace_id": ws, "mcp_server_present": True, "agent_card": {}}
    assert call("/registry/heartbeat", beat, token=registered.body["auth_token"]).status == 200


@pytest.mark.parametrize(
    "card",
    [
        {"name": "nul\x00inside"},
        {"key\x00": 1},
        {"s": "\udfff"},
        deep(40),
        {"n": float("inf")},
    ],
    ids=["nul-value", "nul-key", "surrogate", "too-deep", "inf"],
)
def test_odd_agent_cards(registry, pg, card):
    ws, token = registry.registered(card={"ok": True})
    raw = json.dumps({"workspace_id": ws, "agent_card": card}, allow_nan=True)
    a = call("/registry/update-card", None, token=token, raw=raw)
    assert_refused(a)
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ({"ok": True},)
    raw = json.dumps({"id": new_id(), "url": "http://localhost:1", "agent_card": card}, allow_nan=True)
    assert_refused(call("/registry/register", None, raw=raw))


def test_card_nesting_at_the_limit_is_fine(registry):
    ws, token = registry.registered()
    assert registry.update_card(ws, deep(30), token).status == 200


@pytest.mark.parametrize(
    "url",
    ["http://localhost:1/\x00", "http://\ud800.example/", 5, None, "", "x" * 5000, {"u": 1}],
    ids=["nul", "surrogate", "int", "null", "empty", "long", "object"],
)
def test_odd_urls(registry, url):
    raw = json.dumps({"id": new_id(), "url": url, "agent_card": {}})
    assert_refused(call("/registry/register", None, raw=raw))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "A" * 10_000},
        {"Authorization": "Bearer ✓✓✓"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": ""},
        {"authorization": "bearer x", "AUTHORIZATION": "Bearer y"},
        {"Authorization": "Bearer \x00"},
    ],
    ids=["bare", "huge", "unicode", "basic", "empty", "duplicated", "nul"],
)
def test_odd_authorization_headers(registry, pg, headers, request):
    expected = {
        # repeated with different values: refused before anything else
        "duplicated": (400, "Authorization header is repeated with different values"),
        # an empty header is no header
        "empty": (401, "missing workspace auth token"),
    }.get(request.node.callspec.id, (401, "invalid workspace auth token"))
    ws, token = registry.registered()
    for route, body in [
        ("/registry/heartbeat", {"workspace_id": ws}),
        ("/registry/update-card", {"workspace_id": ws, "agent_card": {"evil": True}}),
        ("/registry/register", {"id": ws, "url": "http://localhost:1", "agent_card": {"evil": True}}),
    ]:
        a = call(route, body, headers=headers)
        assert (a.status, a.body["error"]) == expected, (route, a.raw)
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ({"name": "agent"},)


def test_null_headers_and_unknown_route(registry):
    event = sample_event("heartbeat.json")
    event["headers"] = None
    event["multiValueHeaders"] = None
    event["body"] = json.dumps({"workspace_id": new_id()})
    assert invoke(event).status == 404  # not registered: no headers is no token
    event["path"] = "/registry/heartbeat/extra"
    result = harness.invoke(event, "heartbeat")
    assert result["statusCode"] == 404 and "error" in json.loads(result["body"])
