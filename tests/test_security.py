"""Security beyond the seed: hard-require token mode (the seed's step 30.5),
one-time registration secrets (bootstrap hardening), failed-auth metric,
removed workspaces' tokens, secrets never logged."""

import logging

import pytest

from conftest import new_id




def legacy_workspace(pg):
    ws = new_id()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status) VALUES (%s, 'legacy', 'online')", (ws,))
    return ws


def test_grandfathered_by_default(registry, pg):
    ws = legacy_workspace(pg)
    assert registry.heartbeat(ws).status == 200
    assert registry.update_card(ws, {"v": 1}).status == 200


def test_hard_require_refuses_tokenless_workspaces(registry, pg, env, capsys):
    env(REQUIRE_WORKSPACE_TOKENS="true")
    ws = legacy_workspace(pg)
    for a in (registry.heartbeat(ws), registry.update_card(ws, {"v": 1}), registry.deregister(ws)):
        assert a.status == 401 and a.body["error"] == "missing workspace auth token"
    with pg.cursor() as cur:
        cur.execute("SELECT status::text, agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("online", None)
    assert '"AuthFailures"' in capsys.readouterr().out
    # register still bootstraps the token, which then works
    token = registry.register(ws).body["auth_token"]
    assert registry.heartbeat(ws, token).status == 200
    # an unknown workspace is still 404, so the agent knows to register
    assert registry.heartbeat(new_id()).status == 404


def test_removed_workspace_token_changes_nothing(registry, pg, rds):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
        cur.execute("UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = %s", (ws,))
    rds.flushall()
    # no live token any more, so the gate lets the call through to the
    # tombstone: 410, and nothing minted, written, cached or published
    for a in (registry.heartbeat(ws, token), registry.register(ws, token=token), registry.update_card(ws, {"x": 1}, token)):
        assert (a.status, a.body["error"]) == (410, "workspace is removed")
    with pg.cursor() as cur:
        cur.execute("SELECT status::text, agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("removed", {"name": "agent"})
    assert rds.keys("*") == []


def test_revoked_token_is_refused(registry, pg):
    ws, token = registry.registered()
    with pg.cursor() as cur:  # rotation: a new live token, the old one revoked
        cur.execute("UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = %s", (ws,))
        cur.execute("INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix) VALUES (%s, sha256('other'), 'other')", (ws,))
    a = registry.heartbeat(ws, token)
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"


# --- registration secrets ------------------------------------------------

def provision(servers, ws):
    from registry import provision as prov

    return prov.issue(servers.database_url, ws)


def test_provisioned_workspace_needs_its_secret_once(registry, pg, servers, rds, aws):
    ws = new_id()
    secret = provision(servers, ws)
    with pg.cursor() as cur:
        cur.execute("SELECT status::text, registration_secret_hash IS NOT NULL FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("provisioning", True)
    # an attacker who learned the id cannot claim it
    a = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {"evil": 1}})
    assert a.status == 401 and a.body["error"] == "registration secret required"
    a = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {"evil": 1}, "registration_secret": "guess"})
    assert a.status == 401 and a.body["error"] == "invalid registration secret"
    assert rds.keys("*") == [] and aws.received() == []
    # the real agent can, once
    a = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {"good": 1}, "registration_secret": secret})
    assert a.status == 200 and "auth_token" in a.body
    with pg.cursor() as cur:  # kept until the token's first use, for a lost answer's retry
        cur.execute("SELECT registration_secret_hash IS NOT NULL, agent_card FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == (True, {"good": 1})
    # the token's first use spends the secret: replaying it without the token is refused
    assert registry.heartbeat(ws, a.body["auth_token"]).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT registration_secret_hash FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == (None,)
    a = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {}, "registration_secret": secret})
    assert a.status == 401 and a.body["error"] == "missing workspace auth token"


def test_secret_ignored_for_re_registration_with_token(registry, servers):
    ws = new_id()
    secret = provision(servers, ws)
    first = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {}, "registration_secret": secret})
    token = first.body["auth_token"]
    assert registry.register(ws, token=token).status == 200


def test_require_registration_secret_everywhere(registry, env, servers):
    env(REQUIRE_REGISTRATION_SECRET="true")
    a = registry.register(new_id())
    assert a.status == 401 and a.body["error"] == "registration secret required"
    ws = new_id()
    secret = provision(servers, ws)
    ok = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {}, "registration_secret": secret})
    assert ok.status == 200
    assert registry.register(ws, token=ok.body["auth_token"]).status == 200


def test_provision_refuses_removed_workspace(registry, pg, servers):
    from registry import provision as prov

    ws = new_id()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspaces (id, name, status) VALUES (%s, 'x', 'removed')", (ws,))
    with pytest.raises(ValueError):
        prov.issue(servers.database_url, ws)
    assert prov.main(["--workspace-id", ws, "--database-url", servers.database_url]) == 1


def test_secret_and_token_never_logged(registry, servers, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    ws = new_id()
    secret = provision(servers, ws)
    registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {}, "registration_secret": "wrong-" + secret[:10]})
    a = registry.register_body({"id": ws, "url": "http://localhost:1", "agent_card": {}, "registration_secret": secret})
    token = a.body["auth_token"]
    registry.heartbeat(ws, token)
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text
    assert ws in logged and secret not in logged and secret[:10] not in logged and token not in logged


# --- the URL guard through the register route (issue #12) -----------------

@pytest.mark.parametrize("saas", [False, True], ids=["strict", "saas"])
def test_special_purpose_urls_refused_by_register_with_the_rule(registry, pg, rds, aws, monkeypatch, saas):
    """The addresses issue #12 found accepted, and Teredo, answer 400 naming
    the rule (and the carried address) in both modes; nothing is written."""
    monkeypatch.setenv("MOLECULE_DEPLOY_MODE", "saas" if saas else "self-hosted")
    cases = {
        "http://192.0.0.192/": "cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24)",
        "http://198.18.0.1/": "benchmarking range (RFC-2544)",
        "http://[fec0::1]/": "IPv6 site-local address (deprecated, RFC-3879)",
        "http://[64:ff9b:1::a9fe:a9fe]/": "link-local address (cloud metadata endpoint): 169.254.169.254 embedded in NAT64 local-use address 64:ff9b:1::/48 (RFC-8215)",
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/": "link-local address (cloud metadata endpoint): 169.254.169.254 embedded as the client of Teredo address 2001::/32 (RFC-4380)",
        "http://2130706433/": "loopback address",
    }
    for url, rule in cases.items():
        a = registry.register(new_id(), url=url)
        assert (a.status, a.body) == (400, {"error": f"url targets a blocked address: {rule}"}), url
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspaces")
        assert cur.fetchone() == (0,)
    assert rds.keys("*") == [] and aws.received() == []


def test_refusal_of_a_dns_answer_does_not_echo_the_address(registry):
    """A reason about a DNS answer names the rule, not the address the
    platform's resolver returned (that would map its internal DNS)."""
    a = registry.register(url="http://db.internal.example/", dns={"db.internal.example": ["10.20.30.40"]})
    assert a.status == 400
    assert a.body["error"] == "hostname 'db.internal.example' resolves to forbidden address: url targets a blocked address: RFC-1918 private address"
    a = registry.register(url="http://n.example/", dns={"n.example": ["64:ff9b:1::a14:1e28"]})
    assert a.body["error"].endswith("RFC-1918 private address: embedded in NAT64 local-use address 64:ff9b:1::/48 (RFC-8215)")
    assert "10.20.30.40" not in a.body["error"]


def test_ipv4_mapped_public_and_saas_nat64_private_are_registered(registry, monkeypatch):
    assert registry.register(url="http://[::ffff:8.8.8.8]:8000/").status == 200
    monkeypatch.setenv("MOLECULE_DEPLOY_MODE", "saas")
    assert registry.register(url="http://[64:ff9b::a00:1]:8000/").status == 200
