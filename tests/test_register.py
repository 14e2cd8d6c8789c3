"""Register: ownership, tokens (exactly once, even under a race), URL
refusals, Redis keys and events, on real Postgres, Redis and moto."""

import threading

from conftest import new_id


def tokens_of(pg, ws_id):
    with pg.cursor() as cur:
        cur.execute("SELECT token_hash, prefix, revoked_at FROM workspace_auth_tokens WHERE workspace_id = %s", (ws_id,))
        return cur.fetchall()


def test_token_is_stored_only_as_sha256_and_prefix(registry, pg):
    import hashlib

    ws, token = registry.registered()
    [(token_hash, prefix, revoked)] = tokens_of(pg, ws)
    assert bytes(token_hash) == hashlib.sha256(token.encode()).digest()
    assert prefix == token[:8] and revoked is None
    with pg.cursor() as cur:  # the plaintext is nowhere in the database
        cur.execute("SELECT count(*) FROM workspace_auth_tokens WHERE encode(token_hash, 'escape') LIKE %s OR prefix = %s", (f"%{token}%", token))
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM structure_events WHERE payload::text LIKE %s", (f"%{token}%",))
        assert cur.fetchone() == (0,)


def test_re_registration_with_token_keeps_the_token_and_mints_none(registry, pg):
    ws, token = registry.registered(card={"v": 1})
    a = registry.register(ws, url="http://localhost:8001", card={"v": 2}, token=token)
    assert a.status == 200 and a.body == {"status": "registered"}
    assert len(tokens_of(pg, ws)) == 1
    with pg.cursor() as cur:
        cur.execute("SELECT url, agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("http://localhost:8001", {"v": 2})
    # and the old token still works
    assert registry.heartbeat(ws, token).status == 200


def test_wrong_token_is_refused_and_nothing_written(registry, pg, rds, aws):
    ws, _ = registry.registered(card={"owner": "me"})
    _, other_token = registry.registered()
    rds.flushall()
    aws.received()
    a = registry.register(ws, card={"owner": "attacker"}, token=other_token)
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ({"owner": "me"},)
    assert rds.keys("*") == [] and aws.received() == []


def test_malformed_authorization_on_owned_workspace_is_invalid_token(registry):
    ws, token = registry.registered()
    a = registry.register(ws, headers={"Authorization": f"Token {token}"})
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"


def test_legacy_workspace_without_token_bootstraps_one(registry, pg):
    """Workspaces registered before tokens existed get one on next register."""
    ws = new_id()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status) VALUES (%s, 'legacy', 'online')", (ws,))
    a = registry.register(ws)
    assert a.status == 200 and len(a.body["auth_token"]) == 43
    assert len(tokens_of(pg, ws)) == 1


def test_workspace_whose_tokens_were_revoked_gets_a_new_one(registry, pg):
    ws, old = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = %s", (ws,))
    a = registry.register(ws)
    assert a.status == 200 and a.body["auth_token"] != old
    assert registry.heartbeat(ws, old).status == 401
    assert registry.heartbeat(ws, a.body["auth_token"]).status == 200


def test_first_token_minted_exactly_once_under_a_race(registry, pg, servers):
    """50 concurrent first registrations of one id: one token, returned once."""
    ws = new_id()
    barrier = threading.Barrier(50)
    answers = []
    lock = threading.Lock()

    def first_register():
        barrier.wait()
        a = registry.register(ws)
        with lock:
            answers.append(a)
        from registry import db

        db.close()  # this thread's connection

    threads = [threading.Thread(target=first_register) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 50
    # The winner gets the token; after it, the workspace has a live token
    # and the other 49 present none, so C18 refuses them: nobody else can
    # claim the workspace, and nothing else was written.
    minted = [a.body["auth_token"] for a in answers if a.status == 200 and "auth_token" in a.body]
    assert len(minted) == 1
    assert sorted(a.status for a in answers) == [200] + [401] * 49
    [(token_hash, _, _)] = tokens_of(pg, ws)
    import hashlib

    assert bytes(token_hash) == hashlib.sha256(minted[0].encode()).digest()


def test_refused_url_answers_400_with_reason_and_writes_nothing(registry, pg, rds, aws):
    ws = new_id()
    a = registry.register(ws, url="http://169.254.169.254/latest/meta-data/")
    assert a.status == 400 and "metadata" in a.body["error"]
    a = registry.register(ws, url="http://agent.example.com/", dns={"agent.example.com": ["10.0.0.8"]})
    assert a.status == 400 and "RFC-1918" in a.body["error"]
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspaces")
        assert cur.fetchone() == (0,)
    assert rds.keys("*") == [] and aws.received() == []


def test_dns_name_that_resolves_publicly_is_registered(registry, rds):
    ws = new_id()
    a = registry.register(ws, url="https://agent.example.com:8443/a2a", dns={"agent.example.com": ["93.184.216.34"]})
    assert a.status == 200
    assert rds.get(f"ws:{ws}:url") == "https://agent.example.com:8443/a2a"


def test_saas_mode_accepts_vpc_private_url(registry, monkeypatch):
    monkeypatch.setenv("MOLECULE_DEPLOY_MODE", "saas")
    assert registry.register(url="http://172.31.4.5:8000").status == 200
    monkeypatch.setenv("MOLECULE_DEPLOY_MODE", "self-hosted")
    assert registry.register(url="http://172.31.4.5:8000").status == 400


def test_register_brings_paused_or_offline_workspace_online(registry, pg):
    ws, token = registry.registered()
    for status in ("offline", "paused", "degraded"):
        with pg.cursor() as cur:
            cur.execute("UPDATE workspaces SET status = %s WHERE id = %s", (status, ws))
        assert registry.register(ws, token=token).status == 200
        with pg.cursor() as cur:
            cur.execute("SELECT status FROM workspaces WHERE id = %s", (ws,))
            assert cur.fetchone() == ("online",)


def test_uppercase_uuid_is_normalised(registry, pg, rds):
    ws = new_id()
    a = registry.register(ws.upper())
    assert a.status == 200
    assert rds.get(f"ws:{ws}") == "online"
    assert registry.heartbeat(ws.upper(), a.body["auth_token"]).status == 200


def test_event_detail_envelope(registry, aws):
    ws = new_id()
    registry.register(ws, card={"name": "n"})
    [event] = aws.received()
    assert event["source"] == "workspace-registry"
    detail = event["detail"]
    assert set(detail) == {"event_id", "event_type", "workspace_id", "sequence", "occurred_at", "payload"}
    assert detail["workspace_id"] == ws and detail["event_type"] == "WORKSPACE_ONLINE"
    assert detail["sequence"] == 1 and detail["occurred_at"].endswith("Z")


def test_event_id_is_the_structure_events_row_marked_published_by_the_request(registry, pg, aws):
    ws = new_id()
    registry.register(ws)
    [event] = aws.received()
    with pg.cursor() as cur:  # marked by the request that published it, not by a later one
        cur.execute("SELECT id::text, publish_pending, published_at IS NOT NULL FROM structure_events WHERE workspace_id = %s", (ws,))
        assert cur.fetchall() == [(event["detail"]["event_id"], False, True)]


def test_ids_are_validated_before_the_database(registry, pg):
    for bad in ["ws-123", "", "3f2504e0-4f89-41d3-9a0c-0305e82c330", "3f2504e0-4f89-41d3-9a0c-0305e82c3301\n", "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}"]:
        a = registry.register_body({"id": bad, "url": "http://localhost:8000", "agent_card": {}})
        assert a.status == 400 and a.body["error"].startswith("id:"), (bad, a.raw)
