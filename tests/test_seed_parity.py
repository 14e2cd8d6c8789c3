"""A counterpart of every test in the seed's registry_test.go (and the
registry tests in handlers_test.go / handlers_additional_test.go), named
after the Go test. They run against real Postgres, Redis and moto, so they
assert on rows, keys and published events instead of sqlmock expectations.

Where the port deviates on purpose (DESIGN.md), the test says so: a
database error is a 503 (the seed: 500), a removed workspace is a 410 (the
seed: 200 with no effect), ids are UUIDs (the seed's tests used "ws-123",
which only sqlmock accepted).
"""

import pytest

from conftest import new_id

WEDGE_MSG = "claude_agent_sdk wedge: Control request timeout: initialize — restart workspace to recover"


def row(pg, ws_id, *cols):
    with pg.cursor() as cur:
        cur.execute(f"SELECT {', '.join(cols)} FROM workspaces WHERE id = %s", (ws_id,))
        return cur.fetchone()


def set_status(pg, ws_id, status):
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = %s WHERE id = %s", (status, ws_id))


def event_rows(pg, ws_id):
    with pg.cursor() as cur:
        cur.execute("SELECT event_type, payload FROM structure_events WHERE workspace_id = %s ORDER BY created_at", (ws_id,))
        return cur.fetchall()


def insert_workspace(pg, ws_id, status="online", url=None):
    """A workspace row as the platform's provisioner creates it (no token)."""
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status, url) VALUES (%s, 'ws', %s, %s)", (ws_id, status, url))


def stop_postgres_for(monkeypatch):
    """Point the handlers at a Postgres that is not there (a dead socket dir)."""
    from registry import db

    monkeypatch.setattr(db, "_dsn_provider", lambda: "postgresql://postgres@/postgres?host=/nonexistent-socket-dir")
    db.close()


# --- registry_test.go ----------------------------------------------------

def test_Register_BadJSON(registry, pg):
    a = registry.register(raw="not json")
    assert a.status == 400 and "not valid JSON" in a.body["error"]


def test_Register_MissingRequiredFields(registry, pg):
    a = registry.register_body({"id": new_id()})
    assert a.status == 400 and a.body["error"] == "url: is required"
    a = registry.register_body({"id": new_id(), "url": "http://localhost:1"})
    assert a.status == 400 and a.body["error"] == "agent_card: is required"


def test_Register_DBError(registry, monkeypatch, aws, rds):
    stop_postgres_for(monkeypatch)
    ws = new_id()
    a = registry.register(ws)
    assert a.status == 503  # the seed answered 500
    assert a.headers["retry-after"].isdigit()
    assert rds.keys("*") == [] and aws.received() == []


def test_HeartbeatHandler_OfflineToOnline(registry, pg, aws):
    ws, token = registry.registered()
    set_status(pg, ws, "offline")
    aws.received()
    a = registry.heartbeat(ws, token, error_rate=0.0, sample_error="", active_tasks=1, uptime_seconds=5000)
    assert a.status == 200
    assert row(pg, ws, "status", "active_tasks", "uptime_seconds") == ("online", 1, 5000)
    assert event_rows(pg, ws)[-1] == ("WORKSPACE_ONLINE", {})
    assert "WORKSPACE_ONLINE" in [e["detail-type"] for e in aws.received()]


def test_HeartbeatHandler_ProvisioningToOnline(registry, pg, aws):
    ws = new_id()
    insert_workspace(pg, ws, "provisioning")
    a = registry.heartbeat(ws, error_rate=0.0, sample_error="", active_tasks=1, uptime_seconds=3000)
    assert a.status == 200
    assert row(pg, ws, "status", "uptime_seconds") == ("online", 3000)
    assert event_rows(pg, ws) == [("WORKSPACE_ONLINE", {"recovered_from": "provisioning"})]
    online = [e for e in aws.received() if e["detail-type"] == "WORKSPACE_ONLINE"]
    assert online[0]["detail"]["payload"] == {"recovered_from": "provisioning"}


def test_HeartbeatHandler_BadJSON(registry, pg):
    a = registry.heartbeat_raw("not json")
    assert a.status == 400


def test_HeartbeatHandler_MissingWorkspaceID(registry, pg):
    a = registry.heartbeat_body({"error_rate": 0.1})
    assert a.status == 400 and a.body["error"] == "workspace_id: is required"


def test_HeartbeatHandler_DBUpdateError(registry, pg, monkeypatch):
    ws, token = registry.registered()
    before = row(pg, ws, "last_heartbeat_at", "last_error_rate")
    stop_postgres_for(monkeypatch)
    a = registry.heartbeat(ws, token, error_rate=0.1, active_tasks=0, uptime_seconds=100)
    assert a.status == 503  # the seed answered 500
    assert "database unavailable" in a.body["error"]
    assert row(pg, ws, "last_heartbeat_at", "last_error_rate") == before


def test_HeartbeatHandler_OnlineStaysOnline(registry, pg, aws):
    ws, token = registry.registered()
    aws.received()
    a = registry.heartbeat(ws, token, error_rate=0.2, active_tasks=3, uptime_seconds=4000)
    assert a.status == 200
    assert row(pg, ws, "status", "last_error_rate", "active_tasks") == ("online", 0.2, 3)
    assert [t for t, _ in event_rows(pg, ws)] == ["WORKSPACE_ONLINE"]  # only the register's
    assert aws.received() == []


def test_HeartbeatHandler_RuntimeWedged_FlipsOnlineToDegraded(registry, pg, aws):
    ws, token = registry.registered()
    a = registry.heartbeat(ws, token, error_rate=0.0, sample_error=WEDGE_MSG, active_tasks=0, uptime_seconds=600, runtime_state="wedged")
    assert a.status == 200
    assert row(pg, ws, "status", "last_sample_error") == ("degraded", WEDGE_MSG)
    assert event_rows(pg, ws)[-1] == ("WORKSPACE_DEGRADED", {"runtime_state": "wedged", "sample_error": WEDGE_MSG})


def test_HeartbeatHandler_DegradedRecoversOnlyAfterWedgeClears(registry, pg):
    ws, token = registry.registered()
    set_status(pg, ws, "degraded")
    a = registry.heartbeat(ws, token, error_rate=0.0, sample_error="still broken", uptime_seconds=800, runtime_state="wedged")
    assert a.status == 200
    assert row(pg, ws, "status") == ("degraded",)
    assert [t for t, _ in event_rows(pg, ws)] == ["WORKSPACE_ONLINE"]


def test_HeartbeatHandler_DegradedToOnline_AfterWedgeClears(registry, pg):
    ws, token = registry.registered()
    set_status(pg, ws, "degraded")
    a = registry.heartbeat(ws, token, error_rate=0.0, uptime_seconds=30)
    assert a.status == 200
    assert row(pg, ws, "status") == ("online",)
    assert event_rows(pg, ws)[-1] == ("WORKSPACE_ONLINE", {})


def test_UpdateCard_Success(registry, pg, aws):
    ws, token = registry.registered()
    aws.received()
    card = {"name": "Updated Agent", "skills": ["coding"]}
    a = registry.update_card(ws, card, token)
    assert a.status == 200 and a.body == {"status": "updated"}
    assert row(pg, ws, "agent_card") == (card,)
    assert event_rows(pg, ws)[-1] == ("AGENT_CARD_UPDATED", {"agent_card": card})
    assert [e["detail"]["payload"] for e in aws.received()] == [{"agent_card": card}]


def test_UpdateCard_BadJSON(registry, pg):
    assert registry.update_card_raw("not json").status == 400


def test_UpdateCard_MissingFields(registry, pg):
    a = registry.update_card_body({"workspace_id": new_id()})
    assert a.status == 400 and a.body["error"] == "agent_card: is required"


def test_UpdateCard_DBError(registry, pg, monkeypatch):
    ws, token = registry.registered(card={"name": "before"})
    stop_postgres_for(monkeypatch)
    a = registry.update_card(ws, {"name": "fail"}, token)
    assert a.status == 503
    assert row(pg, ws, "agent_card") == ({"name": "before"},)


def test_Register_GuardAgainstResurrectingRemovedRow(registry, pg, rds, aws):
    ws = new_id()
    insert_workspace(pg, ws, "removed", url="http://127.0.0.1:54321")
    a = registry.register(ws, url="http://localhost:8000", card={"name": "x"})
    assert a.status == 410  # the seed answered 200 and still set the key and broadcast
    assert row(pg, ws, "status", "url", "agent_card") == ("removed", "http://127.0.0.1:54321", None)
    assert rds.keys("*") == []
    assert event_rows(pg, ws) == [] and aws.received() == []


def test_Heartbeat_SkipsRemovedRows(registry, pg, rds):
    ws = new_id()
    insert_workspace(pg, ws, "removed")
    before = row(pg, ws, "last_heartbeat_at", "updated_at")
    a = registry.heartbeat(ws, error_rate=0, sample_error="", active_tasks=0, uptime_seconds=0, current_task="")
    assert a.status == 410  # the seed answered 200
    assert row(pg, ws, "last_heartbeat_at", "updated_at") == before
    assert rds.keys("*") == []


# TestValidateAgentURL and its SaaS/strict/legacy variants are in test_urlguard.py
# under the same names.


def test_Register_C18_BootstrapAllowedNoTokens(registry, pg):
    ws = new_id()
    a = registry.register(ws, url="http://localhost:9100", card={"name": "new-agent"})
    assert a.status == 200 and a.body["status"] == "registered"
    assert len(a.body["auth_token"]) == 43
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspace_auth_tokens WHERE workspace_id = %s AND revoked_at IS NULL", (ws,))
        assert cur.fetchone() == (1,)


def test_Register_C18_HijackBlockedNoBearer(registry, pg, rds, aws):
    ws, _ = registry.registered(card={"name": "victim"}, url="http://localhost:9000")
    rds.flushall()
    aws.received()
    a = registry.register(ws, url="http://example.com:9999/steal", card={"name": "hijacked"}, dns={"example.com": ["93.184.216.34"]})
    assert a.status == 401 and a.body["error"] == "missing workspace auth token"
    assert row(pg, ws, "url", "agent_card") == ("http://localhost:9000", {"name": "victim"})
    assert rds.keys("*") == [] and aws.received() == []
    assert [t for t, _ in event_rows(pg, ws)] == ["WORKSPACE_ONLINE"]


def test_Register_DBErrorResponseIsOpaque(registry, monkeypatch):
    stop_postgres_for(monkeypatch)
    a = registry.register(new_id(), url="http://localhost:9200", card={"name": "err-agent"})
    assert a.status == 503
    for leak in ("sql", "psycopg", "pq:", "connection", "socket", "nonexistent", "postgres"):
        assert leak not in a.raw.lower()


@pytest.mark.parametrize(
    "reported,stored",
    [
        (15000, 15000),  # TestHeartbeat_MonthlySpend_WithinBounds
        (-9999, 777),  # TestHeartbeat_MonthlySpend_NegativeClamped: no update
        (9223372036854775807, 1_000_000_000_000),  # TestHeartbeat_MonthlySpend_OverflowClamped
        (1_000_000_000_000, 1_000_000_000_000),  # TestHeartbeat_MonthlySpend_ExactCap
        (0, 777),  # TestHeartbeat_MonthlySpend_Zero_NoUpdate
    ],
    ids=["WithinBounds", "NegativeClamped", "OverflowClamped", "ExactCap", "Zero_NoUpdate"],
)
def test_Heartbeat_MonthlySpend(registry, pg, reported, stored):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET monthly_spend = 777 WHERE id = %s", (ws,))
    a = registry.heartbeat(ws, token, monthly_spend=reported)
    assert a.status == 200
    assert row(pg, ws, "monthly_spend") == (stored,)


# --- handlers_test.go / handlers_additional_test.go ----------------------

def test_RegisterHandler(registry, pg, rds, aws):
    ws = new_id()
    a = registry.register(ws, url="http://localhost:8000", card={"name": "test"})
    assert a.status == 200 and a.body["status"] == "registered"
    assert row(pg, ws, "name", "url", "agent_card", "status") == (ws, "http://localhost:8000", {"name": "test"}, "online")
    assert row(pg, ws, "last_heartbeat_at")[0] is not None
    assert rds.get(f"ws:{ws}") == "online"
    assert 0 < rds.ttl(f"ws:{ws}") <= 180
    assert rds.get(f"ws:{ws}:url") == "http://localhost:8000"
    assert rds.get(f"ws:{ws}:internal_url") == "http://localhost:8000"
    assert 0 < rds.ttl(f"ws:{ws}:url") <= 300
    [event] = aws.received()
    assert event["detail-type"] == "WORKSPACE_ONLINE"
    assert event["detail"]["payload"] == {"url": "http://localhost:8000", "agent_card": {"name": "test"}}


def test_HeartbeatHandler_Normal(registry, pg):
    ws, token = registry.registered()
    a = registry.heartbeat(ws, token, error_rate=0.1, active_tasks=2, uptime_seconds=3600)
    assert a.status == 200 and a.body == {"status": "ok"}
    assert row(pg, ws, "status", "last_error_rate", "active_tasks", "uptime_seconds") == ("online", 0.1, 2, 3600)


def test_HeartbeatHandler_Degraded(registry, pg):
    ws, token = registry.registered()
    a = registry.heartbeat(ws, token, error_rate=0.8, sample_error="connection timeout", uptime_seconds=7200)
    assert a.status == 200
    assert row(pg, ws, "status") == ("degraded",)
    assert event_rows(pg, ws)[-1] == ("WORKSPACE_DEGRADED", {"error_rate": 0.8, "sample_error": "connection timeout"})


def test_HeartbeatHandler_Recovery(registry, pg):
    ws, token = registry.registered()
    set_status(pg, ws, "degraded")
    assert registry.heartbeat(ws, token, error_rate=0.05, active_tasks=1, uptime_seconds=9000).status == 200
    assert row(pg, ws, "status") == ("online",)


def test_Register_ProvisionerURLPreserved(registry, pg, rds, aws):
    ws = new_id()
    insert_workspace(pg, ws, "provisioning", url="http://127.0.0.1:32001")
    a = registry.register(ws, url="http://localhost:8000", card={"name": "agent"})
    assert a.status == 200
    assert row(pg, ws, "url", "status") == ("http://127.0.0.1:32001", "online")
    assert rds.get(f"ws:{ws}:url") == "http://127.0.0.1:32001"
    assert rds.get(f"ws:{ws}:internal_url") == "http://localhost:8000"
    [event] = aws.received()
    assert event["detail"]["payload"]["url"] == "http://127.0.0.1:32001"


def test_Heartbeat_ExactThreshold_Degraded(registry, pg):
    ws, token = registry.registered()
    assert registry.heartbeat(ws, token, error_rate=0.5, sample_error="edge case", uptime_seconds=500).status == 200
    assert row(pg, ws, "status") == ("degraded",)


def test_Heartbeat_DegradedRecovery(registry, pg):
    ws, token = registry.registered()
    set_status(pg, ws, "degraded")
    assert registry.heartbeat(ws, token, error_rate=0.05, active_tasks=1, uptime_seconds=2000).status == 200
    assert row(pg, ws, "status") == ("online",)
