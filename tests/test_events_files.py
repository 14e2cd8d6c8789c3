"""Every file in events/ (the files `sam local invoke -e` takes) goes to the
function that owns it, found the way the local runner finds it, against
real Postgres, Redis and moto's EventBridge; the interesting cases assert
the answer, the rows, the keys and the events they exist to show.

A file holding ``Authorization: Bearer <token>`` is played against a
workspace that owns that token, as it would be after the first register; a
file without one is played against a registered workspace that has no
token yet (a legacy one), except where the case says otherwise.

Every test here runs twice (conftest.BOTH_FORMATS): with the REST API
files, and with their HTTP API (payload 2.0) twins in events/http-api/,
which must be exactly what ``python -m devstack.harness`` derives from
the REST files, so the two sets cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import sample_event
from registry.liveness import runtime_key

from devstack import harness

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
FILES = sorted(p.name for p in EVENTS.glob("*.json") if p.name != "env.json")


@pytest.fixture(scope="module")
def runner_view():
    """The functions and routes exactly as `make run` discovers them."""
    from devstack import functions as fn

    return fn, fn.route_table(fn.discover())


@dataclass
class Case:
    status: int | None = None  # None: a scheduled event (no HTTP answer)
    # "owned": registered, holding the file's token (or one the file does
    # not have, when it carries none); "legacy": registered,
    # no token; "none": nothing exists. Default: from the file's header.
    setup: str | None = None
    events: list[str] | None = None  # detail-types published, in order
    check: Callable | None = field(default=None, repr=False)


def _row(pg, ws, columns):
    with pg.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM workspaces WHERE id = %s", (ws,))
        return cur.fetchone()


def _degraded_with(**expected):
    def check(ws, body, pg, rds, published):
        assert _row(pg, ws, "status::text") == ("degraded",)
        payload = next(e["detail"]["payload"] for e in published if e["detail-type"] == "WORKSPACE_DEGRADED")
        for key, value in expected.items():
            assert payload[key] == value

    return check


def _spend_and_runtime(ws, body, pg, rds, published):
    assert _row(pg, ws, "monthly_spend") == (1234,)
    runtime = rds.hgetall(runtime_key(ws))
    assert runtime["idle_timeout_seconds"] == "600"
    assert json.loads(runtime["capabilities"]) == {"heartbeat": False, "scheduler": False, "streaming": True}


def _hijack_refused(ws, body, pg, rds, published):
    assert body == {"error": "missing workspace auth token"}
    assert _row(pg, ws, "url") == ("http://localhost:8000",)  # the owner's URL is kept


def _card_updated(ws, body, pg, rds, published):
    (card,) = _row(pg, ws, "agent_card")
    assert card["version"] == "1.1.0" and [s["id"] for s in card["skills"]] == ["search", "cite"]


def _degraded_listed(ws, body, pg, rds, published):
    # The file asks for degraded workspaces: the registered one is online.
    assert body == {"workspaces": [], "next_cursor": None}


def _detail(ws, body, pg, rds, published):
    assert body["workspace"]["id"] == ws and body["workspace"]["agent_card"] == {"name": "research-agent"}
    assert body["redis"]["liveness"]["value"] == "online"
    assert [e["event_type"] for e in body["recent_events"]] == ["WORKSPACE_ONLINE"]


def _feed(ws, body, pg, rds, published):
    assert [(e["workspace_id"], e["event_type"], e["sequence"]) for e in body["events"]] == [(ws, "WORKSPACE_ONLINE", 1)]


def _summary(ws, body, pg, rds, published):
    assert body["workspaces"]["online"] == {"count": 0, "estimated": False} and body["self_preservation"]["state"] == "normal"


def _first_registration(ws, body, pg, rds, published):
    assert set(body) == {"status", "auth_token"} and body["status"] == "registered"
    assert rds.get(f"ws:{ws}") == "online"


# The read side's files share one pair: the caller (X-Workspace-ID, holding
# the files' token) and the target of discover.json, registered as
# root-level siblings.
_DISCOVER = sample_event("discover.json")
PAIR = (_DISCOVER["headers"]["X-Workspace-ID"], _DISCOVER["pathParameters"]["id"])


def _discovered(ws, body, *_):
    assert body == {"id": PAIR[1], "url": "http://localhost:8000", "name": PAIR[1]}


def _peers_listed(ws, body, *_):
    assert [p["id"] for p in body] == [PAIR[1]] and body[0]["agent_card"] == {"name": "research-agent"}


CASES: dict[str, Case] = {
    "register.json": Case(200, setup="none", events=["WORKSPACE_ONLINE"], check=_first_registration),
    "register_with_token.json": Case(200, events=["WORKSPACE_ONLINE"], check=lambda ws, body, *_: body == {"status": "registered"}),
    "register_hijack.json": Case(401, setup="owned", events=[], check=_hijack_refused),
    "heartbeat.json": Case(200, events=["TASK_UPDATED"]),
    "heartbeat_healthy.json": Case(
        200, events=["TASK_UPDATED"], check=lambda ws, body, pg, *_: _row(pg, ws, "status::text") == ("online",)
    ),
    "heartbeat_wedged.json": Case(200, events=["WORKSPACE_DEGRADED"], check=_degraded_with(runtime_state="wedged")),
    "heartbeat_high_error_rate.json": Case(200, events=["WORKSPACE_DEGRADED", "TASK_UPDATED"], check=_degraded_with(error_rate=0.75)),
    "heartbeat_spend_runtime.json": Case(200, events=["TASK_UPDATED"], check=_spend_and_runtime),
    "heartbeat_unknown_workspace.json": Case(404, setup="none", events=[]),
    "update_card.json": Case(200, events=["AGENT_CARD_UPDATED"]),
    "update_card_with_token.json": Case(200, events=["AGENT_CARD_UPDATED"], check=_card_updated),
    "discover.json": Case(200, setup="pair", events=[], check=_discovered),
    "peers.json": Case(200, setup="pair", events=[], check=_peers_listed),
    "check_access.json": Case(200, setup="pair", events=[], check=lambda ws, body, *_: body == {"allowed": True}),
    "admin_workspaces.json": Case(200, setup="none", events=[], check=_degraded_listed),
    "admin_workspace.json": Case(200, events=[], check=_detail),
    "admin_events.json": Case(200, events=[], check=_feed),
    "admin_summary.json": Case(200, setup="none", events=[], check=_summary),
}


def _token_in(event: dict) -> str | None:
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "authorization" and value.lower().startswith("bearer "):
            return value.split(" ", 1)[1]
    return None


def _prepare(setup: str, ws: str, token: str | None, pg) -> None:
    """The workspace as the case needs it, made through the register function."""
    if setup == "none" or ws is None:
        return
    event = sample_event("register.json")
    event["body"] = json.dumps({"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "research-agent"}})
    answer = harness.invoke(event, "register")
    assert answer["statusCode"] == 200, answer
    with pg.cursor() as cur:
        if setup == "owned" and token is not None:
            # The token the first register minted becomes the file's.
            cur.execute(
                "UPDATE workspace_auth_tokens SET token_hash = %s, prefix = %s WHERE workspace_id = %s",
                (hashlib.sha256(token.encode()).digest(), token[:8], ws),
            )
        elif setup == "legacy":  # registered before tokens existed
            cur.execute("DELETE FROM workspace_auth_tokens WHERE workspace_id = %s", (ws,))


@pytest.mark.parametrize("name", FILES)
def test_every_events_file_runs_through_its_function(name, runner_view, registry, pg, rds, aws):
    fn, routes = runner_view
    event = sample_event(name)
    case = CASES.get(name, Case())

    if harness.is_scheduled_event(event):
        result = harness.invoke(event, harness.SWEEP)
        assert isinstance(result, dict)
        return

    method, path = harness.request_of(event)
    found = fn.find_route(routes, method, path)
    assert found is not None, f"events/{name}: no function serves {method} {path}"
    route, _ = found
    if event.get("version") == "2.0":
        assert event["routeKey"] == event["requestContext"]["routeKey"] == f"{route.method} {route.resource}"
    else:
        assert event["resource"] == route.resource

    body = json.loads(event["body"]) if event.get("body") else {}
    query = event.get("queryStringParameters") or {}
    ws = body.get("workspace_id") or body.get("id") or (event.get("pathParameters") or {}).get("id") or query.get("workspace_id")
    token = _token_in(event)
    setup = case.setup or ("owned" if token else "legacy")
    if setup == "pair":
        ws = PAIR[0]
        _prepare("owned", PAIR[0], token, pg)
        _prepare("legacy", PAIR[1], None, pg)
    else:
        _prepare(setup, ws, token, pg)
    aws.received()

    answer = harness.invoke(event, route.function.name)
    published = aws.received()
    status, answer_body = answer["statusCode"], json.loads(answer["body"])
    if case.status is None:
        # A file this table does not know yet (a new route's): it must at
        # least be answered, in JSON, without a server error.
        assert status < 500, (name, answer)
    else:
        assert status == case.status, (name, answer)
    if case.events is not None:
        assert [e["detail-type"] for e in published] == case.events, name
        assert all(e["detail"]["workspace_id"] == ws for e in published)
    if case.check is not None:
        assert case.check(ws, answer_body, pg, rds, published) is not False, name


def test_every_route_has_an_events_file(runner_view):
    fn, routes = runner_view
    covered = set()
    for name in FILES:
        event = sample_event(name)
        if not harness.is_scheduled_event(event):
            covered.add((harness.request_of(event)[0], harness.resource_of(event)))
    missing = [f"{r.method} {r.resource} (functions/{r.function.name})" for r in routes if (r.method, r.resource) not in covered]
    assert not missing, f"routes without a file in events/: {missing}"


def test_http_api_files_are_the_rest_files_in_payload_2_0(api_format):
    """events/http-api/ holds a 2.0 twin of every REST API file and nothing
    else; after changing a REST file, `python -m devstack.harness`
    rewrites the twins."""
    expected = harness.http_api_samples()
    folder = EVENTS / harness.HTTP_API_SAMPLES
    found = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert set(found) == set(expected), "run: python -m devstack.harness"
    for name, text in expected.items():
        assert found[name] == text, f"events/http-api/{name} is out of date: run python -m devstack.harness"
    assert set(expected) == {n for n in FILES if "httpMethod" in sample_event(n, "rest")}


def test_token_bearing_files_carry_a_well_formed_example_token():
    from registry import tokens

    for name in FILES:
        token = _token_in(sample_event(name))
        if token is not None:
            assert tokens.bearer_token(f"Bearer {token}") == token, name


def test_env_json_points_at_the_ports_of_make_run_sam():
    from devstack.local import SAM_PORTS

    params = json.loads((EVENTS / "env.json").read_text())["Parameters"]
    assert params["DATABASE_URL"] == f"postgresql://postgres@127.0.0.1:{SAM_PORTS['postgres']}/postgres"
    assert params["REDIS_URL"] == f"redis://127.0.0.1:{SAM_PORTS['redis']}/0"
    assert params["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{SAM_PORTS['events']}"
    assert params["EVENT_BUS_NAME"] == "workspace-registry"
