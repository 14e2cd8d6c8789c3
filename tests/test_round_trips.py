"""DESIGN.md's round-trip budget, counted at the drivers, so a regression
fails the suite: a steady heartbeat = 1 Redis round trip (one script) and
nothing else; any other heartbeat = that attempt, 1 Postgres call and 1
Redis pipeline (what Redis knows, refreshed); register <= 2 Postgres round
trips, 1 pipeline, 1 PutEvents; update-card = 1 statement + 1 PutEvents; and
the marking of published events: one more Postgres round trip, only when a
recorded event was published. With AUTH_CACHE_SECONDS=0 every heartbeat is
1 Postgres call and 1 pipeline, as before the steady path."""

import psycopg2.extensions
import pytest
import redis.connection

from conftest import new_id


class Counts:
    def __init__(self):
        self.pg = 0
        self.redis = 0
        self.put_events = 0

    def reset(self):
        self.pg = self.redis = self.put_events = 0


@pytest.fixture
def counts(registry, monkeypatch):
    from registry import db, events

    c = Counts()

    class CountingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            c.pg += 1
            return super().execute(query, vars)

    real_connect = db._connect

    def counting_connect():
        conn = real_connect()
        conn.cursor_factory = CountingCursor
        return conn

    monkeypatch.setattr(db, "_connect", counting_connect)
    db.close()

    real_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        c.redis += 1
        return real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)

    client = events._events_client()

    def count_put(**_):
        c.put_events += 1

    client.meta.events.register("before-call.events.PutEvents", count_put)
    # warm: open the connections once, as a warm container has them
    registry.register()
    c.reset()
    yield c
    client.meta.events.unregister("before-call.events.PutEvents", count_put)


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
