"""Warm, in-process latency of each operation against the floor, and the
round trips each one makes, counted at the drivers.

Every operation is timed at three levels, so where the time goes is
visible:

- ``handler``: ``functions/<name>/app.py`` ``lambda_handler`` with an API
  Gateway REST event, what Lambda runs (Powertools resolver, Logger
  context, Metrics flush, JSON and pydantic parsing, the service call);
- ``parsed``:  ``api.parse`` + ``Credentials.from_event`` + the service
  call (the handler without Powertools);
- ``service``: ``registry.service.<op>`` with a parsed payload.

The floor is what no implementation of the operation can beat on these
drivers and connections: one trivial Postgres round trip (``SELECT 1``
through the registry's own psycopg2 connection) followed by one Redis
round trip (``PING`` through the registry's own redis-py client), timed
together. Floor samples are interleaved with the calls (one per round, in
rotating order), so both see the same machine; a floor timed in a tight
loop of its own is reported beside it, as the strictest reading.

Register, update-card and a heartbeat with a status change call PutEvents
(moto in this process, which is not what EventBridge costs); the time
inside the client's ``put_events`` is measured per call and reported
apart, and the ratio to the floor is computed on the rest.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import log, stdout_to_devnull, summary
from devstack.harness import LambdaContext, RoundTrips, api_event, load_function, routes, sample_event

OPS = ("heartbeat_steady", "heartbeat_postgres", "heartbeat_change", "register", "update_card", "discover_hit", "discover_miss", "peers")
LEVELS = ("service", "parsed", "handler")
# Targets: handler-level median (PutEvents excluded) / floor median (issue
# 6), and for the steady heartbeat also the service level (issue 14: the
# floor includes a Postgres round trip the steady path no longer makes).
TARGETS = {"heartbeat_steady": 1.5, "register": 2.5, "update_card": 1.5}
SERVICE_TARGETS = {"heartbeat_steady": 1.0}
LABELS = {
    "heartbeat_steady": "heartbeat (steady)",
    "heartbeat_postgres": "heartbeat (steady, Postgres path)",
    "heartbeat_change": "heartbeat (status change)",
    "register": "register (again, with token)",
    "update_card": "update-card",
    "discover_hit": "discover (cache hit)",
    "discover_miss": "discover (cache miss)",
    "peers": "peers (team of 8)",
}
FUNCTION_OF = {
    "heartbeat_steady": "heartbeat",
    "heartbeat_postgres": "heartbeat",
    "heartbeat_change": "heartbeat",
    "register": "register",
    "update_card": "update_card",
    "discover_hit": "discover",
    "discover_miss": "discover",
    "peers": "peers",
}
# The headers of the bench's POST events: a JSON body (and the token, if any).
JSON = {"Content-Type": "application/json"}
# The read side's teams: the pool in groups of this size under a lead each.
TEAM = 8


def _route_of(function: str) -> str:
    return next(resource for resource, route in routes().items() if route.function.name == function)


def _sample_body(name: str) -> dict:
    return json.loads(sample_event(name)["body"])


# ------------------------------------------------------------- PutEvents meter


class PutEventsMeter:
    """Time inside the events client's put_events, and the entries sent.

    The registry calls ``events._events_client().put_events(Entries=...)``;
    the client instance gets a timing wrapper (the calls themselves are
    counted by devstack.harness.RoundTrips).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.entries = 0

    def install(self) -> None:
        from registry import events

        client = events._events_client()
        original = client.put_events

        def timed_put_events(**kwargs):
            started = time.perf_counter()
            try:
                return original(**kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.entries += len(kwargs.get("Entries") or ())

        client.put_events = timed_put_events


# -------------------------------------------------------------- round trips


class RoundTripCounter:
    """Round trips per call (devstack.harness.RoundTrips, as the tests
    count them), and the commands Redis itself processed (INFO stats), for
    comparison."""

    def __init__(self, meter: PutEventsMeter, redis_url: str):
        self.meter = meter
        self.redis_url = redis_url

    def measure(self, calls: int, one_call: Callable[[int], None]) -> dict[str, float]:
        import redis

        observer = redis.Redis.from_url(self.redis_url)
        commands_before = int(observer.info("stats")["total_commands_processed"])
        entries_before = self.meter.entries
        with RoundTrips() as counts:
            for i in range(calls):
                one_call(i)
        # The INFO call that took the first reading counts itself in the second.
        commands = int(observer.info("stats")["total_commands_processed"]) - commands_before - 1
        observer.close()
        entries_after = self.meter.entries
        return {
            "calls": calls,
            "postgres_round_trips": counts.pg / calls,
            "redis_round_trips": counts.redis / calls,
            "redis_commands": commands / calls,
            "put_events_calls": counts.put_events / calls,
            "put_events_entries": (entries_after - entries_before) / calls,
        }


# ----------------------------------------------------------------- operations


@dataclass
class Workspace:
    id: str
    token: str | None  # None: a workspace without a live token


@dataclass
class Operation:
    """One operation, as events (handler level) and parsed arguments
    (service level), cycling over a pool of workspaces."""

    name: str
    handler: Callable[[dict, Any], dict]
    service: Callable[..., dict]
    model: type
    build: Callable[[Workspace, int], dict]  # body for (workspace, phase)
    pool: list[Workspace]
    phases: int = 1
    counter: int = 0
    # GET operations: ``build`` makes the whole event, and ``parse`` turns
    # it into the service's arguments (the handler's work without Powertools).
    parse: Callable[[dict], tuple] | None = None
    # Untimed, uncounted set-up before the timing and before the counting.
    before: Callable[[], None] | None = None
    _events: dict = field(default_factory=dict)
    _parsed: dict = field(default_factory=dict)

    def prepare(self) -> None:
        from registry import api

        for w in self.pool:
            for phase in range(self.phases):
                if self.parse is not None:
                    event = self.build(w, phase)
                    self._events[(w.id, phase)] = event
                    self._parsed[(w.id, phase)] = self.parse(event)
                    continue
                event = api_event(_route_of(FUNCTION_OF[self.name]), self.build(w, phase), token=w.token, headers=JSON)
                self._events[(w.id, phase)] = event
                self._parsed[(w.id, phase)] = (api.parse(self.model, event), api.Credentials.from_event(event))

    def _next(self) -> tuple[str, int]:
        """The next (workspace, phase): round robin over the pool; with two
        phases each workspace alternates (online/degraded)."""
        k = self.counter
        self.counter += 1
        w = self.pool[k % len(self.pool)]
        return w.id, (k // len(self.pool)) % self.phases

    def call(self, level: str) -> Callable[[], None]:
        from registry import api

        key = self._next()
        if level == "handler":
            event = self._events[key]
            ctx = LambdaContext(FUNCTION_OF[self.name])

            def run() -> None:
                answer = self.handler(event, ctx)
                if answer["statusCode"] != 200:
                    raise RuntimeError(f"{self.name}: {answer['statusCode']} {answer['body']}")

        elif level == "parsed":
            event = self._events[key]
            parse = self.parse

            def run() -> None:
                if parse is not None:
                    self.service(*parse(event))
                else:
                    self.service(api.parse(self.model, event), api.Credentials.from_event(event))

        else:
            arguments = self._parsed[key]

            def run() -> None:
                self.service(*arguments)

        return run


def build_operations(pool_size: int) -> dict[str, Operation]:
    from registry import service
    from registry.models import HeartbeatPayload, RegisterPayload, UpdateCardPayload

    register_fn = load_function("register")
    heartbeat_fn = load_function("heartbeat")
    update_card_fn = load_function("update_card")

    register_body = _sample_body("register_with_token.json")
    heartbeat_body = _sample_body("heartbeat_healthy.json")
    card_body = _sample_body("update_card_with_token.json")

    def new_pool() -> list[Workspace]:
        """Registered through the function (the first registration mints
        the token). One pool per operation, so one operation's status
        changes never reach another's measurement."""
        pool: list[Workspace] = []
        with stdout_to_devnull():
            for _ in range(pool_size):
                ws = str(uuid.uuid4())
                event = api_event("/registry/register", {**register_body, "id": ws}, headers=JSON)
                answer = register_fn.lambda_handler(event, LambdaContext("register"))
                if answer["statusCode"] != 200:
                    raise RuntimeError(f"pool registration failed: {answer}")
                pool.append(Workspace(ws, json.loads(answer["body"])["auth_token"]))
        return pool

    def tokenless_pool() -> list[Workspace]:
        """Workspaces without a live token (legacy, grandfathered): their
        heartbeats present none, so they can never take the steady path:
        the same heartbeat on the Postgres path, the figure before issue 14."""
        from registry import db

        pool = new_pool()
        db.fetch(
            "UPDATE workspace_auth_tokens SET revoked_at = now() WHERE workspace_id = ANY(%(ids)s::uuid[])",
            {"ids": [w.id for w in pool]},
        )
        return [Workspace(w.id, None) for w in pool]

    def steady(w: Workspace, phase: int) -> dict:
        return {**heartbeat_body, "workspace_id": w.id}

    def change(w: Workspace, phase: int) -> dict:
        # phase 0: error_rate 0.9 takes an online workspace to degraded;
        # phase 1: error_rate 0 brings it back (WORKSPACE_ONLINE). Same
        # current_task, so the status event is the only one.
        if phase == 0:
            return {**heartbeat_body, "workspace_id": w.id, "error_rate": 0.9, "sample_error": "upstream model returned 503"}
        return {**heartbeat_body, "workspace_id": w.id}

    def again(w: Workspace, phase: int) -> dict:
        return {**register_body, "id": w.id}

    def card(w: Workspace, phase: int) -> dict:
        body = copy.deepcopy(card_body)
        body["workspace_id"] = w.id
        body["agent_card"]["version"] = f"1.1.{phase}"
        return body

    ops = {
        "heartbeat_steady": Operation("heartbeat_steady", heartbeat_fn.lambda_handler, service.heartbeat, HeartbeatPayload, steady, new_pool()),
        "heartbeat_postgres": Operation(
            "heartbeat_postgres", heartbeat_fn.lambda_handler, service.heartbeat, HeartbeatPayload, steady, tokenless_pool()
        ),
        "heartbeat_change": Operation(
            "heartbeat_change", heartbeat_fn.lambda_handler, service.heartbeat, HeartbeatPayload, change, new_pool(), phases=2
        ),
        "register": Operation("register", register_fn.lambda_handler, service.register, RegisterPayload, again, new_pool()),
        "update_card": Operation(
            "update_card", update_card_fn.lambda_handler, service.update_card, UpdateCardPayload, card, new_pool(), phases=2
        ),
        # One pool for the three reads, which change nothing another sees.
        **read_operations(new_pool()),
    }
    for op in ops.values():
        op.prepare()
    return ops


def read_operations(pool: list[Workspace]) -> dict[str, Operation]:
    """discover (hit and miss) and peers over the pool, arranged in teams of
    TEAM under a lead each (rows written as the platform writes them):
    each workspace discovers its team neighbour and lists its team.

    A miss is made without an extra command: every workspace also holds a
    second live token (the platform allows several), and the miss operation
    alternates them, so each call finds the entry the previous one kept
    bound to the other token, goes to Postgres and keeps its own. The hit
    operation always presents the first."""
    from registry import api, db, discovery, tokens

    seconds: dict[str, str] = {}
    for start in range(0, len(pool), TEAM):
        lead = str(uuid.uuid4())
        db.fetch("INSERT INTO workspaces (id, name, status) VALUES (%(id)s, 'lead', 'online')", {"id": lead})
        for w in pool[start : start + TEAM]:
            db.fetch("UPDATE workspaces SET parent_id = %(lead)s WHERE id = %(id)s", {"lead": lead, "id": w.id})
            second = tokens.mint()
            db.fetch(
                "INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix) VALUES (%(id)s, %(hash)s, %(prefix)s)",
                {"id": w.id, "hash": second.sha256, "prefix": second.prefix},
            )
            seconds[w.id] = second.plaintext
    index = {w.id: i for i, w in enumerate(pool)}

    def neighbour(w: Workspace) -> str:
        i = index[w.id]
        mate = i + 1 if (i % TEAM) + 1 < TEAM and i + 1 < len(pool) else i - (i % TEAM)
        return pool[mate].id if mate != i else pool[i - 1].id

    def discover_event(w: Workspace, phase: int) -> dict:
        token = w.token if phase == 0 else seconds[w.id]
        return api_event("/registry/discover/{id}", params={"id": neighbour(w)}, headers={"X-Workspace-ID": w.id}, token=token)

    def peers_event(w: Workspace, phase: int) -> dict:
        return api_event("/registry/{id}/peers", params={"id": w.id}, headers={"X-Workspace-ID": w.id}, token=w.token)

    def parse_discover(event: dict) -> tuple:
        return (api.header(event, "X-Workspace-ID"), event["pathParameters"]["id"], api.Credentials.from_event(event))

    def parse_peers(event: dict) -> tuple:
        return (event["pathParameters"]["id"], None, api.Credentials.from_event(event))

    url = _sample_body("register_with_token.json")["url"]

    def live_again() -> None:
        """What registration leaves in Redis (liveness key, cached internal
        URL), written again: the earlier operations may have outlived them,
        and a target without them is never answered from the cache."""
        from registry import liveness

        for w in pool:
            liveness.mark_registered(w.id, url=url, internal_url=url)

    def live_and_kept() -> None:
        """live_again, then one discovery per workspace with its first token,
        so the entries the miss operation rebound to the second are back."""
        live_again()
        with stdout_to_devnull():
            for w in pool:
                discovery.discover(*parse_discover(discover_event(w, 0)))

    discover_fn = load_function("discover").lambda_handler
    peers_fn = load_function("peers").lambda_handler
    return {
        "discover_hit": Operation(
            "discover_hit", discover_fn, discovery.discover, None, discover_event, pool, parse=parse_discover, before=live_and_kept
        ),
        "discover_miss": Operation(
            "discover_miss", discover_fn, discovery.discover, None, discover_event, pool, phases=2, parse=parse_discover, before=live_again
        ),
        "peers": Operation("peers", peers_fn, discovery.peers, None, peers_event, pool, parse=parse_peers),
    }


# ---------------------------------------------------------------------- floor


class Floor:
    """SELECT 1 on the registry's Postgres connection, then PING on its
    Redis client: one sample is both, timed together. A one-command
    pipeline is timed after them, for reference (the registry's Redis
    writes are pipelines), and is not part of the floor."""

    def __init__(self) -> None:
        from registry import db, liveness

        self.conn = db.connection()
        self.redis = liveness.client()
        if self.redis is None:
            raise RuntimeError("REDIS_URL is not set")
        self.pg: list[float] = []
        self.ping: list[float] = []
        self.both: list[float] = []
        self.pipe1: list[float] = []

    def sample(self, keep: bool) -> None:
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        t1 = time.perf_counter()
        self.redis.ping()
        t2 = time.perf_counter()
        p = self.redis.pipeline(transaction=False)
        p.exists("bench:floor")
        p.execute()
        t3 = time.perf_counter()
        if keep:
            self.pg.append(t1 - t0)
            self.ping.append(t2 - t1)
            self.both.append(t2 - t0)
            self.pipe1.append(t3 - t2)

    def mark(self) -> int:
        return len(self.both)

    def tight(self, iterations: int) -> dict[str, Any]:
        """The floor in a loop of its own (nothing between samples): the
        lowest it gets on this machine, reported beside the interleaved one."""
        since = self.mark()
        warmup = min(50, iterations)
        for i in range(iterations + warmup):
            self.sample(i >= warmup)
        out = self.report(since)
        for samples in (self.pg, self.ping, self.both, self.pipe1):
            del samples[since:]
        return out

    def report(self, since: int = 0) -> dict[str, Any]:
        return {
            "floor": summary(self.both[since:]),
            "postgres_select_1": summary(self.pg[since:]),
            "redis_ping": summary(self.ping[since:]),
            "redis_pipeline_1_command": summary(self.pipe1[since:]),
        }


def time_operation(op: Operation, iterations: int, meter: PutEventsMeter, floor: Floor) -> dict[str, Any]:
    """Interleaved: every round takes one floor sample and one call at each
    level, in an order that rotates, so drift on a shared machine (other
    processes, autovacuum, checkpoints) touches all of them alike."""
    warmup = max(20, iterations // 10)
    samples = {level: ([], [], []) for level in LEVELS}  # total, inside PutEvents, rest
    kinds = ("floor",) + LEVELS
    since = floor.mark()
    with stdout_to_devnull():
        for i in range(warmup + iterations):
            keep = i >= warmup
            shift = i % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                if kind == "floor":
                    floor.sample(keep)
                    continue
                run = op.call(kind)
                put_before = meter.seconds
                t0 = time.perf_counter()
                run()
                elapsed = time.perf_counter() - t0
                put = meter.seconds - put_before
                if kind != "handler":
                    _clear_metrics()  # no decorator flushes them: keep the handler's flush its own
                if keep:
                    totals, puts, rests = samples[kind]
                    totals.append(elapsed)
                    puts.append(put)
                    rests.append(elapsed - put)
    out: dict[str, Any] = {"floor": floor.report(since)}
    for level, (totals, puts, rests) in samples.items():
        out[level] = {"total": summary(totals), "put_events": summary(puts), "without_put_events": summary(rests)}
    return out


def measure(
    iterations: int,
    pool_size: int,
    count_calls: int,
    redis_url: str,
    meter: PutEventsMeter,
    profile_dir=None,
) -> dict[str, Any]:
    ops = build_operations(pool_size)
    counter = RoundTripCounter(meter, redis_url)
    floor = Floor()
    log(f"floor in a tight loop: {iterations} samples")
    tight_before = floor.tight(iterations)
    with stdout_to_devnull():
        # One pass on the Postgres path so each workspace's next heartbeat
        # changes nothing and Redis knows it (the steady path); and one for
        # the token-less pool, whose first beat records nothing new.
        for name in ("heartbeat_steady", "heartbeat_postgres"):
            for _ in ops[name].pool:
                ops[name].call("service")()
        _clear_metrics()

    results: dict[str, Any] = {}
    for name in OPS:
        op = ops[name]
        log(f"{name}: {iterations} rounds of (floor, service, parsed, handler), interleaved")
        entry: dict[str, Any] = {"label": LABELS[name]}
        if op.before is not None:
            op.before()
        entry.update(time_operation(op, iterations, meter, floor))
        if op.before is not None:
            op.before()
        with stdout_to_devnull():
            entry["round_trips"] = counter.measure(count_calls, lambda i, op=op: op.call("handler")())
        results[name] = entry

    log(f"floor in a tight loop again: {iterations} samples")
    tight_after = floor.tight(iterations)
    tight = min(tight_before["floor"]["median_ms"], tight_after["floor"]["median_ms"])
    combined = floor.report()
    combined["tight_loop_before"] = tight_before
    combined["tight_loop_after"] = tight_after
    for name, entry in results.items():
        own = entry["floor"]["floor"]
        for level in LEVELS:
            rest = entry[level]["without_put_events"]
            entry[level]["ratio_median"] = rest["median_ms"] / own["median_ms"]
            entry[level]["ratio_p99"] = rest["p99_ms"] / own["p99_ms"]
            entry[level]["above_floor_ms"] = rest["median_ms"] - own["median_ms"]
        # Against the lower of the two tight-loop floors: the strictest reading.
        entry["handler"]["ratio_median_tight_floor"] = entry["handler"]["without_put_events"]["median_ms"] / tight
        entry["powertools_overhead_ms"] = (
            entry["handler"]["without_put_events"]["median_ms"] - entry["parsed"]["without_put_events"]["median_ms"]
        )
        entry["parse_overhead_ms"] = (
            entry["parsed"]["without_put_events"]["median_ms"] - entry["service"]["without_put_events"]["median_ms"]
        )
        target = TARGETS.get(name)
        entry["target_ratio"] = target
        entry["target_met"] = None if target is None else entry["handler"]["ratio_median"] <= target
        service_target = SERVICE_TARGETS.get(name)
        entry["service_target_ratio"] = service_target
        entry["service_target_met"] = None if service_target is None else entry["service"]["ratio_median"] <= service_target

    log("where the time goes: service-level parts and the SQL anatomy")
    parts, captured = breakdown(ops, max(20, iterations // 4), meter)
    for name, entry in results.items():
        entry["breakdown_mean_ms"] = parts[name]
    anatomy = sql_anatomy(captured, max(20, iterations // 4))
    for name, entry in results.items():
        entry["sql_anatomy"] = anatomy.get(name)

    out: dict[str, Any] = {
        "iterations": iterations,
        "pool": pool_size,
        "floor": combined,
        "select_1_alone_ms": (anatomy.get("_select_1") or {}).get("as_sent"),
        "operations": results,
    }
    if profile_dir is not None:
        out["profiles"] = profile(ops, iterations, profile_dir)
    return out


def breakdown(ops: dict[str, Operation], calls: int, meter: PutEventsMeter) -> tuple[dict[str, dict], dict[str, tuple]]:
    """Service level, each call split into: inside db.fetch (the Postgres
    round trip: send, server work, receive) for the operation's statement,
    inside Redis (a pipeline's execute, or one command: the steady script),
    the marking of its published events (statements.MARK_PUBLISHED: the
    extra round trip taken only when a recorded event was published), inside
    the Redis pipeline's execute, inside PutEvents, and the rest (Python).
    Means, so the parts add up. Also keeps one (statement, parameters) per
    operation."""
    import redis.client
    from registry import db, statements

    acc = {"postgres": 0.0, "marking": 0.0, "redis": 0.0}
    captured: dict[str, tuple] = {}
    current = [""]
    real_fetch = db.fetch
    real_execute = redis.client.Pipeline.execute
    real_command = redis.client.Redis.execute_command

    def fetch(sql, params=None):
        part = "marking" if sql is statements.MARK_PUBLISHED else "postgres"
        if part == "postgres" and current[0]:
            captured.setdefault(current[0], (sql, dict(params or {})))
        started = time.perf_counter()
        try:
            return real_fetch(sql, params)
        finally:
            acc[part] += time.perf_counter() - started

    def execute(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return real_execute(self, *args, **kwargs)
        finally:
            acc["redis"] += time.perf_counter() - started

    def command(self, *args, **kwargs):  # one command: the steady path's script
        started = time.perf_counter()
        try:
            return real_command(self, *args, **kwargs)
        finally:
            acc["redis"] += time.perf_counter() - started

    out: dict[str, dict] = {}
    db.fetch = fetch
    redis.client.Pipeline.execute = execute
    redis.client.Redis.execute_command = command
    try:
        with stdout_to_devnull():
            for name in OPS:
                op = ops[name]
                if op.before is not None:
                    current[0] = ""  # its statements are not this operation's
                    op.before()
                current[0] = name
                runs = [op.call("service") for _ in range(calls)]
                acc["postgres"] = acc["marking"] = acc["redis"] = 0.0
                put_before = meter.seconds
                started = time.perf_counter()
                for run in runs:
                    run()
                total = time.perf_counter() - started
                put = meter.seconds - put_before
                python = total - acc["postgres"] - acc["marking"] - acc["redis"] - put
                out[name] = {
                    "total": total / calls * 1000,
                    "postgres": acc["postgres"] / calls * 1000,
                    "marking": acc["marking"] / calls * 1000,
                    "redis": acc["redis"] / calls * 1000,
                    "put_events": put / calls * 1000,
                    "python": python / calls * 1000,
                }
    finally:
        db.fetch = real_fetch
        redis.client.Pipeline.execute = real_execute
        redis.client.Redis.execute_command = real_command
        _clear_metrics()
    names = {id(v): k for k, v in vars(statements).items() if isinstance(v, str)}
    return out, {op: (names.get(id(sql), "?"), sql, params) for op, (sql, params) in captured.items()}


def sql_anatomy(captured: dict[str, tuple], calls: int) -> dict[str, dict]:
    """Each operation's statement, replayed with the parameters it was
    sent, on a connection of its own: as sent; EXPLAIN without ANALYZE
    (parse, analyse, rewrite and plan, and the round trip, nothing run);
    and as sent with synchronous_commit off (what the WAL flush at commit
    costs). Medians in ms. The difference "as sent - EXPLAIN" is execution
    plus commit."""
    import psycopg2
    from registry import db

    dsn = db._dsn_provider()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()

    def median_ms(sql: str, params) -> float:
        samples = []
        warmup = min(20, calls)
        for i in range(calls + warmup):
            started = time.perf_counter()
            cur.execute(sql, params)
            if cur.description is not None:
                cur.fetchall()
            if i >= warmup:
                samples.append(time.perf_counter() - started)
        return summary(samples)["median_ms"]

    out: dict[str, dict] = {}
    try:
        out["_select_1"] = {"as_sent": median_ms("SELECT 1", None)}
        for op, (name, sql, params) in captured.items():
            # register sends a lock and a statement in one string; EXPLAIN each.
            head, sep, tail = sql.partition(";")
            two = bool(sep) and "--" not in head and head.strip().upper().startswith("SELECT") and tail.strip().upper().startswith("WITH")
            explain = f"EXPLAIN {head}; EXPLAIN {tail}" if two else f"EXPLAIN {sql}"
            entry = {"statement": name, "as_sent": median_ms(sql, params)}
            try:
                entry["parse_and_plan"] = median_ms(explain, params)
            except psycopg2.Error as err:
                log(f"sql anatomy: EXPLAIN of {name} failed: {str(err).splitlines()[0]}")
                continue
            cur.execute("SET synchronous_commit = off")
            entry["as_sent_async_commit"] = median_ms(sql, params)
            cur.execute("SET synchronous_commit = on")
            entry["execute_and_commit"] = entry["as_sent"] - entry["parse_and_plan"]
            entry["commit_flush"] = entry["as_sent"] - entry["as_sent_async_commit"]
            out[op] = entry
    finally:
        cur.close()
        conn.close()
    return out


def _clear_metrics() -> None:
    """Metrics added by service-level calls (no log_metrics decorator to
    flush them) are dropped so the next handler call flushes only its own."""
    from registry.observability import metrics

    metrics.clear_metrics()


def profile(ops: dict[str, Operation], iterations: int, out_dir) -> dict[str, str]:
    """pyinstrument over the handler loop of each operation (item 7)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        log("pyinstrument is not installed; skipping --profile")
        return {}
    written = {}
    for name in OPS:
        op = ops[name]
        runs = [op.call("handler") for _ in range(iterations)]
        profiler = Profiler(interval=0.0002)
        with stdout_to_devnull():
            profiler.start()
            for run in runs:
                run()
            profiler.stop()
        text = out_dir / f"profile-{name}.txt"
        text.write_text(profiler.output_text(unicode=False, color=False, show_all=True))
        html = out_dir / f"profile-{name}.html"
        html.write_text(profiler.output_html())
        written[name] = str(text)
        log(f"profile of {name}: {text}")
    return written
