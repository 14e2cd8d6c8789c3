"""Redis keys: liveness, URL caches and per-workspace runtime overrides.

Keys (the seed's, plus one hash for what the seed kept in process memory):

- ``ws:{id}``               "online", TTL = LIVENESS_TTL_SECONDS (default 180 s,
                            about five missed 30 s heartbeats)
- ``ws:{id}:url``           URL the platform dispatches to (a provisioner URL
                            kept on the row wins), 5 minutes
- ``ws:{id}:internal_url``  URL the agent reported, for workspace-to-workspace
                            discovery, 5 minutes
- ``ws:{id}:runtime``       hash, TTL = liveness TTL:
    ``last_heartbeat_at``     unix time (seconds, decimal) of the last heartbeat
    ``idle_timeout_seconds``  A2A idle timeout override; absent = platform default
    ``capabilities``          JSON object {capability: bool}; absent = the
                              runtime did not say (an old runtime)

Postgres is the record and Redis a cache of it: every write here is one
pipeline (one round trip), and a Redis failure is logged and counted but
never fails the request. After a failure Redis is skipped for a short
cool-down so a dead cache costs one short time-out per container, not one
per call.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from registry.observability import count, logger
from registry.settings import get_settings

URL_CACHE_TTL_SECONDS = 300

_lock = threading.Lock()
_client: redis.Redis | None = None
_skip_until = 0.0


def liveness_key(workspace_id: str) -> str:
    return f"ws:{workspace_id}"


def url_key(workspace_id: str) -> str:
    return f"ws:{workspace_id}:url"


def internal_url_key(workspace_id: str) -> str:
    return f"ws:{workspace_id}:internal_url"


def runtime_key(workspace_id: str) -> str:
    return f"ws:{workspace_id}:runtime"


def client() -> redis.Redis | None:
    """The container's Redis client, created on first use (None if unset)."""
    global _client
    if _client is None:
        url = get_settings().redis_url
        if not url:
            return None
        with _lock:
            if _client is None:
                _client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=0.5,
                    socket_timeout=0.5,
                    # One retry covers a pooled connection the server closed
                    # while the container was frozen; more would multiply
                    # the time-out when Redis is really down.
                    retry=Retry(NoBackoff(), 1),
                    health_check_interval=60,
                )
    return _client


def reset() -> None:
    """Drop the client and the cool-down (tests, and a changed REDIS_URL)."""
    global _client, _skip_until
    with _lock:
        if _client is not None:
            _client.close()
        _client = None
        _skip_until = 0.0


def _run(what: str, workspace_id: str, build) -> bool:
    """Run one pipeline; True when Redis took it."""
    global _skip_until
    r = client()
    if r is None or time.monotonic() < _skip_until:
        return False
    try:
        pipe = r.pipeline(transaction=False)
        build(pipe)
        pipe.execute()
        return True
    except (redis.RedisError, OSError) as err:
        _skip_until = time.monotonic() + get_settings().redis_cooldown_seconds
        count("RedisFailures")
        logger.warning("redis unavailable; continuing without it", extra={"operation": what, "workspace_id": workspace_id, "error": type(err).__name__})
        return False


def mark_registered(workspace_id: str, url: str, internal_url: str) -> bool:
    ttl = get_settings().liveness_ttl_seconds

    def build(pipe):
        pipe.set(liveness_key(workspace_id), "online", ex=ttl)
        pipe.set(url_key(workspace_id), url, ex=URL_CACHE_TTL_SECONDS)
        pipe.set(internal_url_key(workspace_id), internal_url, ex=URL_CACHE_TTL_SECONDS)
        pipe.hset(runtime_key(workspace_id), "last_heartbeat_at", f"{time.time():.3f}")
        pipe.expire(runtime_key(workspace_id), ttl)

    return _run("register", workspace_id, build)


def write_heartbeat(workspace_id: str, runtime_metadata: Any | None) -> bool:
    """Refresh liveness and store the runtime overrides of one heartbeat.

    SET (not the seed's EXPIRE) so a key lost in a cache failover is back on
    the next heartbeat instead of staying missing until the next register.
    A positive idle_timeout_seconds sets the override; absent or <= 0
    clears it, as does a heartbeat without runtime_metadata (seed rule).
    """
    ttl = get_settings().liveness_ttl_seconds
    fields: dict[str, str] = {"last_heartbeat_at": f"{time.time():.3f}"}
    clear: list[str] = []
    idle = getattr(runtime_metadata, "idle_timeout_seconds", None)
    if idle is not None and idle > 0:
        fields["idle_timeout_seconds"] = str(idle)
    else:
        clear.append("idle_timeout_seconds")
    capabilities = getattr(runtime_metadata, "capabilities", None)
    if capabilities is not None:
        fields["capabilities"] = json.dumps(capabilities, sort_keys=True, separators=(",", ":"))
    elif runtime_metadata is None:
        clear.append("capabilities")

    def build(pipe):
        pipe.set(liveness_key(workspace_id), "online", ex=ttl)
        key = runtime_key(workspace_id)
        pipe.hset(key, mapping=fields)
        if clear:
            pipe.hdel(key, *clear)
        pipe.expire(key, ttl)

    return _run("heartbeat", workspace_id, build)


def read(workspace_id: str) -> dict[str, Any] | None:
    """What Redis holds for one workspace, for operators (GET /admin/
    workspaces/{id}): each key's value and the seconds it has left, in one
    pipeline. None when Redis is unset or unavailable (logged and counted
    as for writes): the caller shows the record without it."""
    global _skip_until
    r = client()
    if r is None or time.monotonic() < _skip_until:
        return None
    keys = {
        "liveness": liveness_key(workspace_id),
        "url": url_key(workspace_id),
        "internal_url": internal_url_key(workspace_id),
    }
    try:
        pipe = r.pipeline(transaction=False)
        for key in keys.values():
            pipe.get(key)
            pipe.pttl(key)
        pipe.hgetall(runtime_key(workspace_id))
        pipe.pttl(runtime_key(workspace_id))
        answers = pipe.execute()
    except (redis.RedisError, OSError) as err:
        _skip_until = time.monotonic() + get_settings().redis_cooldown_seconds
        count("RedisFailures")
        logger.warning("redis unavailable; continuing without it", extra={"operation": "read", "workspace_id": workspace_id, "error": type(err).__name__})
        return None

    def text(value: Any) -> str | None:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def seconds(pttl: int) -> float | None:
        # PTTL: -2 no key, -1 no expiry.
        return None if pttl < 0 else round(pttl / 1000, 3)

    found: dict[str, Any] = {}
    for i, (name, key) in enumerate(keys.items()):
        value, pttl = answers[2 * i], answers[2 * i + 1]
        found[name] = {"key": key, "value": text(value), "ttl_seconds": seconds(pttl)}
    runtime = {text(k): text(v) for k, v in answers[-2].items()}
    if "capabilities" in runtime:
        try:
            runtime["capabilities"] = json.loads(runtime["capabilities"])
        except ValueError:
            pass  # shown as stored
    found["runtime"] = {"key": runtime_key(workspace_id), "fields": runtime, "ttl_seconds": seconds(answers[-1])}
    return found


def clear(workspace_id: str) -> bool:
    """Remove every key of a workspace (deregister, offline sweep)."""

    return clear_many([workspace_id])


def clear_many(workspace_ids: list[str]) -> bool:
    """Remove every key of many workspaces in one pipeline (the sweep)."""
    if not workspace_ids:
        return True

    def build(pipe):
        # One DEL per key: ElastiCache Serverless is a cluster, where a
        # multi-key DEL across hash slots fails with CROSSSLOT.
        for ws in workspace_ids:
            for key in (liveness_key(ws), url_key(ws), internal_url_key(ws), runtime_key(ws)):
                pipe.delete(key)

    return _run("clear", workspace_ids[0] if len(workspace_ids) == 1 else f"{len(workspace_ids)} workspaces", build)
