"""A lost first answer no longer locks an agent out (sql/register.sql).

The first register mints the token and commits; if the answer never reaches
the agent, the agent registers again without a token. While the minted
token is unconfirmed (never used) and younger than TOKEN_RECOVERY_SECONDS,
that retry revokes it and mints a new one; a registration secret, when one
was required, must be presented again. After the token's first use, or
after the window, nothing changes from the seed: 401.
"""

import threading

from conftest import new_id
from test_security import provision


def live_tokens(pg, ws):
    with pg.cursor() as cur:
        cur.execute("SELECT prefix, confirmed_at IS NOT NULL FROM workspace_auth_tokens WHERE workspace_id = %s AND revoked_at IS NULL", (ws,))
        return cur.fetchall()


def age_tokens(pg, ws, seconds):
    """As if the first registration happened ``seconds`` ago."""
    with pg.cursor() as cur:
        cur.execute("UPDATE workspace_auth_tokens SET created_at = created_at - %s * interval '1 second' WHERE workspace_id = %s", (seconds, ws))


def test_lost_answer_then_retry_gets_a_new_token(registry, pg, caplog):
    ws = new_id()
    lost = registry.register(ws).body["auth_token"]  # never reaches the agent
    age_tokens(pg, ws, 30)
    retry = registry.register(ws)
    assert retry.status == 200 and retry.body["auth_token"] != lost
    assert live_tokens(pg, ws) == [(retry.body["auth_token"][:8], False)]
    assert "unconfirmed token reissued" in caplog.text and lost not in caplog.text
    assert registry.heartbeat(ws, lost).status == 401
    assert registry.heartbeat(ws, retry.body["auth_token"]).status == 200
    assert live_tokens(pg, ws) == [(retry.body["auth_token"][:8], True)]  # its first use confirmed it


def test_retry_after_the_token_was_used_is_refused(registry, pg):
    ws, token = registry.registered()
    assert registry.update_card(ws, {"v": 2}, token).status == 200  # any authenticated call confirms
    age_tokens(pg, ws, 30)
    a = registry.register(ws)
    assert a.status == 401 and a.body["error"] == "missing workspace auth token"
    assert registry.heartbeat(ws, token).status == 200


def test_retry_after_the_window_is_refused(registry, pg, env):
    env(TOKEN_RECOVERY_SECONDS=600)
    ws, token = registry.registered()
    age_tokens(pg, ws, 601)
    assert registry.register(ws).status == 401
    assert registry.heartbeat(ws, token).status == 200


def test_recovery_can_be_turned_off(registry, pg, env):
    env(TOKEN_RECOVERY_SECONDS=0)
    ws, _ = registry.registered()
    age_tokens(pg, ws, 30)
    assert registry.register(ws).status == 401


def test_a_registration_racing_the_first_one_is_no_retry(registry):
    """Moments after the first registration, another one without a token is
    a racer (a second container, someone racing the agent), not a retry."""
    ws, token = registry.registered()
    assert registry.register(ws).status == 401
    assert registry.heartbeat(ws, token).status == 200


def test_wrong_token_is_never_a_retry(registry, pg):
    ws, _ = registry.registered()
    _, other = registry.registered()
    age_tokens(pg, ws, 30)
    a = registry.register(ws, token=other)
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"
    a = registry.register(ws, headers={"Authorization": "Bearer not-a-token"})
    assert a.status == 401 and a.body["error"] == "invalid workspace auth token"


def test_with_a_registration_secret_the_retry_must_present_it(registry, pg, servers):
    ws = new_id()
    secret = provision(servers, ws)
    body = {"id": ws, "url": "http://localhost:1", "agent_card": {}}
    lost = registry.register_body({**body, "registration_secret": secret})
    assert lost.status == 200
    age_tokens(pg, ws, 30)
    a = registry.register_body({**body, "registration_secret": "guess"})
    assert a.status == 401 and a.body["error"] == "invalid registration secret"
    a = registry.register_body(body)
    assert a.status == 401 and a.body["error"] == "registration secret required"
    assert live_tokens(pg, ws) == [(lost.body["auth_token"][:8], False)]  # refusals change nothing
    a = registry.register_body({**body, "registration_secret": secret})
    assert a.status == 200 and a.body["auth_token"] != lost.body["auth_token"]
    # the new token's first use spends the secret
    assert registry.heartbeat(ws, a.body["auth_token"]).status == 200
    age_tokens(pg, ws, 30)
    a = registry.register_body({**body, "registration_secret": secret})
    assert a.status == 401 and a.body["error"] == "missing workspace auth token"


def test_two_racing_retries_mint_one_token(registry, pg):
    ws = new_id()
    registry.register(ws)
    age_tokens(pg, ws, 30)
    barrier = threading.Barrier(2)
    answers = []

    def retry():
        from registry import db

        barrier.wait()
        answers.append(registry.register(ws))
        db.close()

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a.status for a in answers) == [200, 401]
    [winner] = [a for a in answers if a.status == 200]
    assert live_tokens(pg, ws) == [(winner.body["auth_token"][:8], False)]


def test_a_removed_workspace_is_not_recovered(registry, pg):
    ws, _ = registry.registered()
    age_tokens(pg, ws, 30)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    a = registry.register(ws)
    assert a.status == 410
    assert len(live_tokens(pg, ws)) == 1  # nothing revoked, nothing minted
