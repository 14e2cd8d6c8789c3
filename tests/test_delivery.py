"""Delivered once unless something failed, with separate containers.

Each route is its own Lambda: the container that published an event must
mark it published itself, because it may never run again (the earlier
design marked it with the same container's next statement, and an idle
register container left every event to the relay: most events arrived
twice). Here each container is a separate process with its own connections,
against a moto EventBridge server they all share; the sweep runs in another
process, as its own Lambda does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO, new_id

from devstack import harness

CONTAINER = r"""
import json, sys
from devstack import functions as fn
from devstack import harness
from registry import events

calls = json.load(sys.stdin)
out = []
for call in calls:
    if call.get("lose_marking"):
        # As if the container were killed between PutEvents and the marking.
        events.mark_published = lambda accepted: None
    if call["function"] == harness.SWEEP:
        out.append(harness.invoke(harness.scheduled_event(), harness.SWEEP))
        continue
    headers = [("Content-Type", "application/json")]
    if call.get("token"):
        headers.append(("Authorization", "Bearer " + call["token"]))
    [route] = fn.load(call["function"]).routes
    request = harness.Request("POST", route.path, headers=headers, body=json.dumps(call["body"]).encode(), host="localhost")
    result = harness.invoke(harness.rest_event(request, route.resource), call["function"])
    out.append({"status": result["statusCode"], "body": json.loads(result["body"])})
print(json.dumps(out, default=str))
"""


BUS_IO = r"""
import json, sys
from devstack import harness
endpoint, action = sys.argv[1], sys.argv[2]
events, sqs = harness.moto_client("events", endpoint), harness.moto_client("sqs", endpoint)
if action == "setup":
    harness.tap_bus(events, sqs, "delivery-test", "delivery-test", {"source": ["workspace-registry"]})
queue = sqs.get_queue_url(QueueName="delivery-test")["QueueUrl"]
out = []
while batch := harness.drain_queue(sqs, queue):
    out.extend(batch)
print(json.dumps(out))
"""
# The processes import devstack and the layer as the test session does.
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "layers" / "shared")])


@pytest.fixture(scope="module")
def bus(aws):
    """moto's EventBridge as a server the processes share, and a queue its
    catch-all rule feeds. After conftest's in-process mock has started (its
    start resets the backends this server shares), and read from a process
    of its own, since the mock would answer this one's calls."""
    endpoint, stop = harness.start_moto()

    def io(action):
        env = {**os.environ, "PYTHONPATH": PYTHONPATH}
        done = subprocess.run([sys.executable, "-c", BUS_IO, endpoint, action], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    io("setup")
    yield endpoint, lambda: io("read")
    stop()


def container(endpoint: str, calls: list[dict], **env) -> list:
    """One Lambda container: a process of its own that serves ``calls`` and exits."""
    child_env = harness.child_env(endpoint=endpoint, bus="delivery-test")
    child_env.update(
        {
            "PYTHONPATH": PYTHONPATH,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **env,
        }
    )
    done = subprocess.run([sys.executable, "-c", CONTAINER], input=json.dumps(calls), capture_output=True, text=True, env=child_env, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def register(ws, **extra):
    return {"function": "register", "body": {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": ws[:8]}}, **extra}


SWEEP = {"function": "liveness_sweep"}


def pending(pg):
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM structure_events WHERE publish_pending")
        return cur.fetchone()[0]


def test_no_duplicate_when_nothing_fails(servers, bus, pg):
    endpoint, received = bus
    a, b = new_id(), new_id()
    answers = container(endpoint, [register(a), register(b)])
    token = answers[0]["body"]["auth_token"]
    container(
        endpoint,
        [
            {"function": "update_card", "body": {"workspace_id": a, "agent_card": {"v": 2}}, "token": token},
            {"function": "deregister", "body": {"workspace_id": a}, "token": token},
        ],
    )
    # The containers are gone; the sweep, in a process of its own, relays
    # whatever is still pending, with no grace at all.
    [sweep] = container(endpoint, [SWEEP], EVENT_RELAY_GRACE_SECONDS="0")
    assert sweep["relayed"] == 0 and sweep["pending_events"] == 0
    got = Counter((e["detail-type"], e["detail"]["workspace_id"]) for e in received())
    assert got == Counter({("WORKSPACE_ONLINE", a): 1, ("WORKSPACE_ONLINE", b): 1, ("AGENT_CARD_UPDATED", a): 1, ("WORKSPACE_OFFLINE", a): 1})
    assert pending(pg) == 0


def test_exactly_the_unmarked_events_are_relayed_when_the_marking_is_lost(servers, bus, pg):
    endpoint, received = bus
    kept, lost1, lost2 = new_id(), new_id(), new_id()
    container(endpoint, [register(kept), register(lost1, lose_marking=True), register(lost2)])
    first = received()
    assert sorted(e["detail"]["workspace_id"] for e in first) == sorted([kept, lost1, lost2])
    assert pending(pg) == 2
    [sweep] = container(endpoint, [SWEEP], EVENT_RELAY_GRACE_SECONDS="0")
    assert sweep["relayed"] == 2 and sweep["pending_events"] == 0
    again = received()
    # The same events (same event_id: consumers dedupe), and only those.
    lost_ids = {e["detail"]["event_id"] for e in first if e["detail"]["workspace_id"] in (lost1, lost2)}
    assert {e["detail"]["event_id"] for e in again} == lost_ids and len(again) == 2
    assert pending(pg) == 0


def test_the_relay_leaves_a_request_its_grace_period(servers, bus, pg):
    """A container between commit and PutEvents is not raced by the relay."""
    endpoint, received = bus
    ws = new_id()
    container(endpoint, [register(ws, lose_marking=True)])
    assert len(received()) == 1
    [sweep] = container(endpoint, [SWEEP], EVENT_RELAY_GRACE_SECONDS="60")
    assert sweep["relayed"] == 0 and sweep["pending_events"] == 1 and received() == []
