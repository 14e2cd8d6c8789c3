"""Update card: token gate, 404/410, stored card and AGENT_CARD_UPDATED."""

from conftest import new_id


def card_of(pg, ws):
    with pg.cursor() as cur:
        cur.execute("SELECT agent_card FROM workspaces WHERE id = %s", (ws,))
        return cur.fetchone()[0]


def test_unknown_workspace_is_404(registry, aws):
    a = registry.update_card(new_id(), {"name": "x"})
    assert a.status == 404 and aws.received() == []


def test_token_gate(registry, pg, aws):
    ws, token = registry.registered(card={"v": 1})
    aws.received()
    assert registry.update_card(ws, {"v": 2}).status == 401
    _, other = registry.registered()
    assert registry.update_card(ws, {"v": 2}, other).status == 401
    assert card_of(pg, ws) == {"v": 1}
    assert [t for t in aws.types() if t == "AGENT_CARD_UPDATED"] == []
    assert registry.update_card(ws, {"v": 3}, token).status == 200
    assert card_of(pg, ws) == {"v": 3}


def test_removed_is_410_and_card_unchanged(registry, pg, aws):
    ws, token = registry.registered(card={"v": 1})
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (ws,))
    aws.received()
    assert registry.update_card(ws, {"v": 2}, token).status == 410
    assert card_of(pg, ws) == {"v": 1} and aws.received() == []


def test_card_with_unicode_round_trips(registry, pg, aws):
    ws, token = registry.registered()
    card = {"name": "研究エージェント", "emoji": "🤖", "nested": {"list": [1, 2.5, True, None, "x"]}}
    aws.received()
    assert registry.update_card(ws, card, token).status == 200
    assert card_of(pg, ws) == card
    [event] = aws.received()
    assert event["detail"]["payload"] == {"agent_card": card}


def test_card_must_be_an_object(registry):
    ws, token = registry.registered()
    for bad in [[], "card", 3, None]:
        a = registry.update_card(ws, bad, token)
        assert a.status == 400 and a.body["error"].startswith("agent_card:")
