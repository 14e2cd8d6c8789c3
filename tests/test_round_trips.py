"""DESIGN.md's round-trip budget, counted at the drivers, so a regression
fails the suite: a steady heartbeat = 1 Redis round trip (one script) and
nothing else; any other heartbeat = that attempt, 1 Postgres call and 1
Redis pipeline (what Redis knows, refreshed); register <= 2 Postgres round
trips, 1 pipeline, 1 PutEvents; update-card = 1 statement + 1 PutEvents; and
the marking of published events: one more Postgres round trip, only when a
recorded event was published. With AUTH_CACHE_SECONDS=0 every heartbeat is
1 Postgres call and 1 pipeline, as before the steady path. The read side
(issue #13): a discovery answered from Redis is one pipeline and no
Postgres; otherwise one statement however deep the tree, between a read and
a write pipeline; peers and check-access are one statement each."""


from conftest import new_id



def test_steady_heartbeat_is_one_redis_round_trip_and_nothing_else(registry, counts):
    ws, token = registry.registered()
    registry.heartbeat(ws, token, current_task="t")  # Postgres path: caches what the next one checks
    counts.reset()
    assert registry.heartbeat(ws, token, current_task="t", uptime_seconds=60).status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (0, 1, 0)


def test_without_the_auth_cache_every_heartbeat_is_one_statement_one_pipeline(registry, counts, env):
    env(AUTH_CACHE_SECONDS=0)
    ws, token = registry.registered()
    registry.heartbeat(ws, token, current_task="t")
    counts.reset()
    assert registry.heartbeat(ws, token, current_task="t", uptime_seconds=60).status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (1, 1, 0)


def test_heartbeat_with_a_transition_is_still_one_statement(registry, counts):
    ws, token = registry.registered()
    counts.reset()
    assert registry.heartbeat(ws, token, error_rate=0.9, current_task="new").status == 200
    # the steady attempt; the statement, then the marking of the published
    # transition; what Redis knows, refreshed
    assert (counts.pg, counts.redis, counts.put_events) == (2, 2, 1)


def test_register_first_and_again_within_budget(registry, counts):
    ws = new_id()
    a = registry.register(ws)
    assert a.status == 200
    assert counts.pg <= 2 and (counts.redis, counts.put_events) == (1, 1)
    counts.reset()
    assert registry.register(ws, token=a.body["auth_token"]).status == 200
    assert counts.pg <= 2 and (counts.redis, counts.put_events) == (1, 1)


def test_update_card_is_one_statement_one_publish(registry, counts):
    ws, token = registry.registered()
    counts.reset()
    assert registry.update_card(ws, {"v": 2}, token).status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (2, 0, 1)


def test_a_task_change_alone_publishes_without_marking(registry, counts):
    """TASK_UPDATED is transient (not recorded): nothing to mark."""
    ws, token = registry.registered()
    counts.reset()
    assert registry.heartbeat(ws, token, current_task="another").status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (1, 2, 1)


def test_refusals_cost_one_statement_and_nothing_else(registry, counts):
    ws, _ = registry.registered()
    counts.reset()
    assert registry.heartbeat(ws).status == 401
    assert registry.heartbeat(new_id()).status == 404
    assert (counts.pg, counts.redis, counts.put_events) == (2, 0, 0)


def test_bad_input_costs_no_round_trip(registry, counts):
    assert registry.heartbeat_raw("{bad").status == 400
    assert registry.register(url="http://169.254.169.254/").status == 400
    assert (counts.pg, counts.redis, counts.put_events) == (0, 0, 0)


def test_discover_hit_is_one_redis_round_trip_and_no_postgres(registry, counts):
    a, ta = registry.registered()
    b, _ = registry.registered()
    assert registry.discover(a, b, ta).status == 200  # a miss keeps the answer
    counts.reset()
    assert registry.discover(a, b, ta).status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (0, 1, 0)


def test_discover_miss_is_one_statement_however_deep_the_tree(registry, counts, pg):
    top, _ = registry.registered()
    # A chain 20 deep under top; the bottom one discovers top (an ancestor).
    parent = top
    for _ in range(20):
        ws = new_id()
        with pg.cursor() as cur:
            cur.execute("INSERT INTO workspaces (id, name, parent_id, status) VALUES (%s, 'x', %s, 'online')", (ws, parent))
        parent = ws
    counts.reset()
    answer = registry.discover(parent, top)  # no token on file: grandfathered, so nothing is kept
    assert answer.status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (1, 1, 0)
    a, ta = registry.registered()
    counts.reset()
    assert registry.discover(a, top, ta).status == 200
    # the read pipeline, the statement, the write pipeline (the kept answer)
    assert (counts.pg, counts.redis, counts.put_events) == (1, 2, 0)


def test_discover_refusals_cost_the_read_and_one_statement(registry, counts):
    a, ta = registry.registered()
    counts.reset()
    assert registry.discover(a, new_id(), ta).status == 404
    assert registry.discover(a, a).status == 401
    assert (counts.pg, counts.redis) == (2, 2)
    counts.reset()
    assert registry.discover(None, a, ta).status == 400
    assert (counts.pg, counts.redis) == (0, 0)


def test_peers_and_check_access_are_one_statement_each(registry, counts):
    a, ta = registry.registered()
    b, _ = registry.registered()
    counts.reset()
    assert registry.peers(a, ta).status == 200
    assert (counts.pg, counts.redis, counts.put_events) == (1, 0, 0)
    counts.reset()
    assert registry.check_access(a, b, ta).body == {"allowed": True}
    assert (counts.pg, counts.redis, counts.put_events) == (1, 0, 0)
