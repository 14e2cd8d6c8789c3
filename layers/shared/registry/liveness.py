"""Redis keys: liveness, URL caches and per-workspace runtime overrides.

Keys (the seed's, plus one hash for what the seed kept in process memory):

- ``ws:{id}``               "online", TTL = LIVENESS_TTL_SECONDS (default 180 s,
                            about five missed 30 s heartbeats)
- ``ws:{id}:url``           URL the platform dispatches to (a provisioner URL
                            kept on the row wins), 5 minutes
- ``ws:{id}:internal_url``  URL the agent reported, for workspace-to-workspace
                            discovery, 5 minutes
- ``registry:discover:{caller}:{target}``
                            discovery's fast path: the answer last given to
                            this caller for this target, bound to its token,
                            TTL = DISCOVER_CACHE_SECONDS (registry/discovery.py)
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
from dataclasses import dataclass
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


def discover_key(caller_id: str, target_id: str) -> str:
    # Ours, not the seed's (no ws: prefix): the platform never reads it.
    return f"registry:discover:{caller_id}:{target_id}"


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


def _pipeline(what: str, workspace_id: str, build) -> list | None:
    """Run one pipeline (one round trip); its replies, or None without Redis."""
    global _skip_until
    r = client()
    if r is None or time.monotonic() < _skip_until:
        return None
    try:
        pipe = r.pipeline(transaction=False)
        build(pipe)
        return pipe.execute()
    except (redis.RedisError, OSError) as err:
        _skip_until = time.monotonic() + get_settings().redis_cooldown_seconds
        count("RedisFailures")
        logger.warning("redis unavailable; continuing without it", extra={"operation": what, "workspace_id": workspace_id, "error": type(err).__name__})
        return None


def _run(what: str, workspace_id: str, build) -> bool:
    """Run one pipeline; True when Redis took it."""
    return _pipeline(what, workspace_id, build) is not None


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


# --- peer discovery (registry/discovery.py) --------------------------------


@dataclass(frozen=True)
class DiscoveryView:
    """What Redis knows for one discovery, read in one round trip."""

    answer: str | None  # the fast path's entry (JSON), when it was asked for
    internal_url: str | None  # ws:{target}:internal_url
    live: bool  # ws:{target} exists: the target heartbeats


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def read_discovery(caller_id: str, target_id: str, *, with_answer: bool) -> DiscoveryView | None:
    """The cached answer (when asked), the target's internal URL and whether
    it is live: one pipeline. None when Redis is unavailable."""

    def build(pipe):
        if with_answer:
            pipe.get(discover_key(caller_id, target_id))
        pipe.get(internal_url_key(target_id))
        pipe.exists(liveness_key(target_id))

    replies = _pipeline("discover", target_id, build)
    if replies is None:
        return None
    answer = _text(replies.pop(0)) if with_answer else None
    return DiscoveryView(answer, _text(replies[0]) or None, bool(replies[1]))


def internal_url(workspace_id: str) -> str | None:
    """ws:{id}:internal_url alone (a forwarded target's)."""
    replies = _pipeline("discover", workspace_id, lambda pipe: pipe.get(internal_url_key(workspace_id)))
    return None if replies is None else (_text(replies[0]) or None)


def write_discovery(
    caller_id: str, target_id: str, *, answer: str | None, ttl: int, internal_url: tuple[str, str] | None = None
) -> bool:
    """After a Postgres-path answer: the fast path's entry (when given) and
    the internal URL built for a workspace (id, url), as the seed cached it
    (CacheInternalURL). NX: a URL a registration reported a moment ago
    wins over the one built from the template."""
    if answer is None and internal_url is None:
        return True

    def build(pipe):
        if answer is not None:
            pipe.set(discover_key(caller_id, target_id), answer, ex=ttl)
        if internal_url is not None:
            pipe.set(internal_url_key(internal_url[0]), internal_url[1], ex=URL_CACHE_TTL_SECONDS, nx=True)

    return _run("discover", target_id, build)
