"""Every event the registry publishes validates against its JSON Schema.

events/schemas/<detail-type>.json describes an event's ``detail``. They are
JSON Schema draft-04, the dialect the EventBridge Schema Registry accepts
(``JSONSchemaDraft4``), so a consumer can upload them as they are or
generate bindings from them. Validation uses the ``jsonschema`` package
(listed in requirements-dev.txt; cfn-lint already depends on it).

Three layers of proof:
- the schemas are valid and name exactly the event types the code can
  publish (found by scanning the code, not from a list);
- events built with registry.events.Event(...).detail() for every type and
  payload variant validate, and wrong ones do not (the schemas are not
  vacuous);
- the events the handlers and the sweep really put on (moto's) EventBridge,
  against real Postgres and Redis, validate with their detail-type.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from conftest import new_id

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "events" / "schemas"
# Python and the request functions' SQL (registry/sql/ records the events
# of register, heartbeat, update-card and deregister).
SOURCES = (
    sorted((REPO / "layers" / "shared" / "registry").glob("*.py"))
    + sorted((REPO / "layers" / "shared" / "registry" / "sql").glob("*.sql"))
    + sorted((REPO / "layers" / "shared" / "registry" / "migrations").glob("*.sql"))
    + sorted((REPO / "functions").glob("*/app.py"))
)

# The event types of the contract (DESIGN.md and the issue).
DOCUMENTED = {
    "WORKSPACE_ONLINE",
    "WORKSPACE_DEGRADED",
    "WORKSPACE_OFFLINE",
    "AGENT_CARD_UPDATED",
    "TASK_UPDATED",
    "QUEUE_DRAIN_REQUESTED",
    "WORKSPACE_HEARTBEAT",
    "REGISTRY_SELF_PRESERVATION",
}
# An event type in the code is a quoted upper-case name with one of these
# prefixes: in Python (Event("TASK_UPDATED", ...)) or in SQL ('WORKSPACE_ONLINE').
_EVENT_NAME = re.compile(r"""["']((?:WORKSPACE|AGENT|TASK|QUEUE|REGISTRY)_[A-Z_]+)["']""")


def _load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def validator(event_type: str) -> Draft4Validator:
    return Draft4Validator(_load(event_type))


def errors(event_type: str, detail: dict) -> list[str]:
    return [e.message for e in validator(event_type).iter_errors(detail)]


def published_types() -> set[str]:
    found = set()
    for path in SOURCES:
        found |= set(_EVENT_NAME.findall(path.read_text()))
    return found


# ---------------------------------------------------------------- the schemas


def test_schema_files_are_valid_draft4_and_name_their_type():
    files = {p.stem for p in SCHEMAS.glob("*.json")}
    assert files == DOCUMENTED
    for name in sorted(files):
        schema = _load(name)
        Draft4Validator.check_schema(schema)
        assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
        assert schema["title"] == name
        assert schema["properties"]["event_type"] == {"description": "Always equal to the detail-type.", "enum": [name]}
        assert schema["required"] == ["event_id", "event_type", "workspace_id", "sequence", "occurred_at", "payload"]
        assert schema["additionalProperties"] is False


def test_every_event_type_the_code_publishes_has_a_schema():
    found = published_types()
    # The scan must see the types that the handlers, statements and status
    # rules publish, or it proves nothing.
    assert {"WORKSPACE_ONLINE", "WORKSPACE_DEGRADED", "AGENT_CARD_UPDATED", "TASK_UPDATED", "QUEUE_DRAIN_REQUESTED"} <= found
    missing = found - {p.stem for p in SCHEMAS.glob("*.json")}
    assert not missing, f"published without a schema: {sorted(missing)}"


# ---------------------------------------------------------------- built events


def build(event_type: str, payload: dict, workspace_id: str | None = "ws") -> dict:
    from registry.events import Event

    ws = str(uuid.uuid4()) if workspace_id == "ws" else workspace_id
    return Event(event_type, ws, payload).detail()


CARD = {"name": "research-agent", "skills": [{"id": "search"}], "capabilities": {"streaming": True}}

VALID = [
    ("WORKSPACE_ONLINE", {"url": "https://agent.example.com", "agent_card": CARD}),
    ("WORKSPACE_ONLINE", {}),
    ("WORKSPACE_ONLINE", {"recovered_from": "provisioning"}),
    ("WORKSPACE_DEGRADED", {"runtime_state": "wedged", "sample_error": "Control request timeout: initialize"}),
    ("WORKSPACE_DEGRADED", {"error_rate": 0.5, "sample_error": ""}),
    ("WORKSPACE_DEGRADED", {"error_rate": 1, "sample_error": "boom"}),
    ("AGENT_CARD_UPDATED", {"agent_card": CARD}),
    ("TASK_UPDATED", {"current_task": "summarise the report", "active_tasks": 1}),
    ("TASK_UPDATED", {"current_task": "", "active_tasks": 0}),
    ("QUEUE_DRAIN_REQUESTED", {"active_tasks": 0}),
    ("WORKSPACE_HEARTBEAT", {"active_tasks": 2, "uptime_seconds": 120}),
    (
        "WORKSPACE_OFFLINE",
        {"reason": "liveness_expired", "previous_status": "online", "last_heartbeat_at": "2026-11-25T00:00:00.123+00:00"},
    ),
    ("WORKSPACE_OFFLINE", {"reason": "liveness_expired", "previous_status": "degraded", "last_heartbeat_at": None}),
    ("WORKSPACE_OFFLINE", {"reason": "deregistered", "previous_status": "online"}),
    ("WORKSPACE_OFFLINE", {"reason": "deregistered"}),
]


@pytest.mark.parametrize("event_type, payload", VALID, ids=[f"{t}-{i}" for i, (t, _) in enumerate(VALID)])
def test_built_events_validate(event_type, payload):
    assert errors(event_type, build(event_type, payload)) == []


@pytest.mark.parametrize("state", ["entered", "left"])
def test_self_preservation_is_registry_wide(state):
    payload = {"state": state, "silent": 40, "fleet": 100, "threshold_percent": 15.0}
    assert errors("REGISTRY_SELF_PRESERVATION", build("REGISTRY_SELF_PRESERVATION", payload, workspace_id=None)) == []
    assert errors("REGISTRY_SELF_PRESERVATION", build("REGISTRY_SELF_PRESERVATION", payload)) != []


INVALID = [
    ("WORKSPACE_ONLINE", {"url": "https://agent.example.com"}),  # card missing
    ("WORKSPACE_ONLINE", {"recovered_from": "offline"}),
    ("WORKSPACE_ONLINE", {"url": "", "agent_card": CARD}),
    ("WORKSPACE_DEGRADED", {"runtime_state": "slow", "sample_error": ""}),
    ("WORKSPACE_DEGRADED", {"error_rate": 1.5, "sample_error": ""}),
    ("WORKSPACE_DEGRADED", {"error_rate": 0.7}),
    ("AGENT_CARD_UPDATED", {"agent_card": "not an object"}),
    ("AGENT_CARD_UPDATED", {"agent_card": CARD, "url": "https://x"}),
    ("TASK_UPDATED", {"current_task": "x", "active_tasks": -1}),
    ("QUEUE_DRAIN_REQUESTED", {}),
    ("WORKSPACE_HEARTBEAT", {"active_tasks": 1}),
    ("WORKSPACE_OFFLINE", {"reason": "crashed"}),
    ("WORKSPACE_OFFLINE", {"previous_status": "online"}),
    ("REGISTRY_SELF_PRESERVATION", {"state": "paused", "silent": 1, "fleet": 2, "threshold_percent": 15}),
    ("REGISTRY_SELF_PRESERVATION", {"state": "entered", "silent": 1, "fleet": 2}),
]


@pytest.mark.parametrize("event_type, payload", INVALID, ids=[f"{t}-{i}" for i, (t, _) in enumerate(INVALID)])
def test_wrong_payloads_are_refused(event_type, payload):
    workspace_id = None if event_type == "REGISTRY_SELF_PRESERVATION" else "ws"
    assert errors(event_type, build(event_type, payload, workspace_id)) != []


def test_wrong_envelopes_are_refused():
    good = build("TASK_UPDATED", {"current_task": "x", "active_tasks": 1})
    assert errors("TASK_UPDATED", good) == []
    assert errors("WORKSPACE_HEARTBEAT", good) != []  # event_type must equal the detail-type
    for broken in (
        {**good, "event_id": "not-a-uuid"},
        {**good, "workspace_id": good["workspace_id"].upper()},
        {**good, "occurred_at": "2026-11-25T00:00:00+00:00"},  # the registry always writes Z
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "event_id"},
    ):
        assert errors("TASK_UPDATED", broken) != [], broken


def test_recorded_events_keep_their_row_time_format():
    """Events read back from structure_events carry Postgres' timestamps."""
    from registry.events import recorded

    when = datetime(2026, 11, 25, 1, 2, 3, 456789, tzinfo=timezone.utc)
    row = {"event_id": uuid.uuid4(), "event_type": "AGENT_CARD_UPDATED", "workspace_id": new_id(), "event_payload": {"agent_card": CARD},
           "occurred_at": when, "revision": 7}
    detail = recorded(row).detail()
    assert detail["occurred_at"] == "2026-11-25T01:02:03.456789Z" and detail["sequence"] == 7
    assert errors("AGENT_CARD_UPDATED", detail) == []
    assert errors("AGENT_CARD_UPDATED", {**detail, "sequence": "7"}) != []


# ---------------------------------------------------------------- real events




def _age(pg, ws_ids, seconds):
    with pg.cursor() as cur:
        cur.execute(
            "UPDATE workspaces SET last_heartbeat_at = now() - %s * interval '1 second' WHERE id = ANY(%s::uuid[])", (seconds, list(ws_ids))
        )


def test_every_event_the_registry_publishes_validates(registry, pg, aws, env):
    """Drive every path that publishes, then validate all that reached the bus."""
    env(PUBLISH_HEARTBEAT_EVENTS="true")
    ws, token = registry.registered(card=CARD)  # WORKSPACE_ONLINE {url, agent_card}
    assert (
        registry.heartbeat(ws, token, current_task="write the summary", active_tasks=1).status == 200
    )  # TASK_UPDATED, WORKSPACE_HEARTBEAT
    assert registry.heartbeat(ws, token, error_rate=0.75, sample_error="boom").status == 200  # DEGRADED {error_rate}
    assert registry.heartbeat(ws, token).status == 200  # ONLINE {}
    assert registry.heartbeat(ws, token, runtime_state="wedged", sample_error="SDK locked").status == 200  # DEGRADED {wedged}
    assert registry.update_card(ws, {**CARD, "version": "2"}, token).status == 200  # AGENT_CARD_UPDATED
    with pg.cursor() as cur:  # #1870: queued work and spare capacity
        cur.execute("INSERT INTO a2a_queue (workspace_id, body) VALUES (%s, '{}')", (ws,))
    # a task change takes the Postgres path, which checks the queue itself
    assert registry.heartbeat(ws, token, active_tasks=0, runtime_state="wedged", current_task="next").status == 200  # QUEUE_DRAIN_REQUESTED
    assert registry.deregister(ws, token).status == 200  # OFFLINE {deregistered}

    # A workspace the provisioner created, heartbeating before any register (#1784).
    provisioned = new_id()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status) VALUES (%s, 'p', 'provisioning')", (provisioned,))
    assert registry.heartbeat(provisioned).status == 200  # ONLINE {recovered_from}

    # The sweep: one silent workspace expires; then a mass silence.
    silent, _ = registry.registered()
    _age(pg, [silent], 3600)
    registry.sweep()  # OFFLINE {liveness_expired}
    env(SELF_PRESERVATION_MIN_SILENT=2, SELF_PRESERVATION_THRESHOLD_PERCENT=10)
    crowd = [registry.registered()[0] for _ in range(3)]
    _age(pg, crowd + [provisioned], 3600)
    registry.sweep()  # REGISTRY_SELF_PRESERVATION entered
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() WHERE id = ANY(%s::uuid[])", (crowd + [provisioned],))
    registry.sweep()  # REGISTRY_SELF_PRESERVATION left

    received = aws.received()
    seen = {}
    for envelope in received:
        assert envelope["source"] == "workspace-registry"
        detail_type = envelope["detail-type"]
        assert (SCHEMAS / f"{detail_type}.json").is_file(), f"{detail_type} has no schema"
        assert errors(detail_type, envelope["detail"]) == [], (detail_type, envelope["detail"])
        seen.setdefault(detail_type, []).append(envelope["detail"]["payload"])
    assert set(seen) == DOCUMENTED, f"not exercised: {DOCUMENTED - set(seen)}"
    # Each variant of a payload was really published.
    assert {"url", "agent_card"} <= set().union(*map(set, seen["WORKSPACE_ONLINE"]))
    assert {"recovered_from": "provisioning"} in seen["WORKSPACE_ONLINE"] and {} in seen["WORKSPACE_ONLINE"]
    assert {p.get("runtime_state") for p in seen["WORKSPACE_DEGRADED"]} == {None, "wedged"}
    assert {p["reason"] for p in seen["WORKSPACE_OFFLINE"]} == {"deregistered", "liveness_expired"}
    assert [p["state"] for p in seen["REGISTRY_SELF_PRESERVATION"]] == ["entered", "left"]
