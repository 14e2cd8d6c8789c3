"""The steady heartbeat in a simulated fleet: which path each heartbeat
takes and what Postgres sees per 1,000 workspaces per minute.

``agents`` workspaces are registered and heartbeat twice a simulated minute
(every 30 s), through ``registry.service.heartbeat`` with the payloads the
runtime sends; each minute ``change_percent`` of them change something the
platform acts on (half flip their error rate, degrading or recovering; half
change their current task), and the sweep runs once (flush, decision,
relay, drains). Simulated time: the minutes pass as fast as the machine
runs them, so what Redis knows never expires between sweeps, as in AWS
where the sweep re-arms it every minute (AUTH_CACHE_SECONDS above the sweep
interval). Every Postgres statement is counted by name at db.fetch.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from bench.common import log, statement_name, stdout_to_devnull


def simulate(agents: int, minutes: int, change_percent: float) -> dict[str, Any]:
    from registry import db, liveness, service, sweep
    from registry.api import Credentials
    from registry.models import HeartbeatPayload, RegisterPayload
    from registry.tokens import hash_token

    # The bench's own database and Redis: start from empty ones, so what the
    # sweeps count is this fleet alone (earlier sections left workspaces).
    db.fetch("TRUNCATE workspaces, workspace_auth_tokens, structure_events, a2a_queue CASCADE")
    liveness.client().flushdb()
    log(f"steady: registering {agents} agents")
    fleet: list[tuple[str, Credentials]] = []
    with stdout_to_devnull():
        for _ in range(agents):
            ws = str(uuid.uuid4())
            answer = service.register(
                RegisterPayload(id=ws, url="http://localhost:8000", agent_card={"name": "agent"}), Credentials(False, None)
            )
            fleet.append((ws, Credentials(True, hash_token(answer["auth_token"]))))
    state = {ws: {"error_rate": 0.0, "current_task": "", "n": 0} for ws, _ in fleet}

    def beat(ws: str, credentials: Credentials) -> None:
        s = state[ws]
        service.heartbeat(
            HeartbeatPayload(workspace_id=ws, error_rate=s["error_rate"], current_task=s["current_task"], uptime_seconds=60 * s["n"]),
            credentials,
        )
        s["n"] += 1

    # Minute 0: every agent's first heartbeat confirms its token on the
    # Postgres path, and a sweep writes what Redis knows; then the counted minutes.
    with stdout_to_devnull():
        for ws, credentials in fleet:
            beat(ws, credentials)
        sweep.run()

    statements: Counter = Counter()
    paths: Counter = Counter()
    real_fetch, real_steady = db.fetch, liveness.steady_beat

    def fetch(sql, params=None):
        statements[statement_name(sql)] += 1
        return real_fetch(sql, params)

    def steady_beat(*args, **kwargs):
        outcome = real_steady(*args, **kwargs)
        paths["steady" if outcome == "steady" else f"Postgres ({outcome})"] += 1
        return outcome

    changers = max(1, round(agents * change_percent / 100))
    log(f"steady: {minutes} simulated minutes, {changers} of {agents} agents changing each minute")
    started = time.perf_counter()
    db.fetch, liveness.steady_beat = fetch, steady_beat
    try:
        with stdout_to_devnull():
            for minute in range(minutes):
                first = (minute * changers) % agents
                for i in range(changers):  # this minute's changes, applied before its beats
                    ws = fleet[(first + i) % agents][0]
                    if i % 2:
                        state[ws]["current_task"] = f"task {minute}"
                    else:
                        state[ws]["error_rate"] = 0.0 if state[ws]["error_rate"] else 0.9
                for _ in range(2):  # every 30 s
                    for ws, credentials in fleet:
                        beat(ws, credentials)
                sweep.run()
    finally:
        db.fetch, liveness.steady_beat = real_fetch, real_steady
    seconds = time.perf_counter() - started
    heartbeats = 2 * agents * minutes
    per_k_min = {name: n * 1000 / agents / minutes for name, n in statements.items()}
    request = sum(v for k, v in per_k_min.items() if k in ("HEARTBEAT", "REGISTER", "MARK_PUBLISHED"))
    return {
        "agents": agents,
        "minutes": minutes,
        "changing_per_minute": changers,
        "heartbeats": heartbeats,
        "paths": dict(paths),
        "steady_share": paths["steady"] / heartbeats,
        "statements_per_1000_per_minute": per_k_min,
        "request_statements_per_1000_per_minute": request,
        "all_statements_per_1000_per_minute": sum(per_k_min.values()),
        "before_per_1000_per_minute": 2000.0,  # one statement per heartbeat, two heartbeats a minute
        "seconds": seconds,
    }
