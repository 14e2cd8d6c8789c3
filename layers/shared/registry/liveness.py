"""Redis: liveness, URL caches, runtime overrides, what the steady heartbeat
checks, and the beats waiting to be written to Postgres.

Keys of a workspace. The seed's (the platform reads and clears them):

- ``ws:{id}``               "online", TTL = LIVENESS_TTL_SECONDS (default 180 s,
                            about five missed 30 s heartbeats)
- ``ws:{id}:url``           URL the platform dispatches to (a provisioner URL
                            kept on the row wins), 5 minutes
- ``ws:{id}:internal_url``  URL the agent reported, for workspace-to-workspace
                            discovery, 5 minutes

Discovery's fast path (registry/discovery.py), one key per caller and target:

- ``registry:discover:{caller}:{target}``  the answer last given to this
                            caller for this target, bound to the sha256 of its
                            token, TTL = DISCOVER_CACHE_SECONDS

The registry's own, hash-tagged ``{ws:<id>}``: Redis Cluster (ElastiCache
Serverless is one) hashes a key with braces on the text inside them, so
these share a slot with the seed's liveness key ``ws:<id>`` (hashed whole,
the same text) and one script can touch all three:

- ``{ws:<id>}:runtime``  hash, TTL = liveness TTL:
    ``last_heartbeat_at``     unix time (seconds, decimal) of the last heartbeat
    ``idle_timeout_seconds``  A2A idle timeout override; absent = platform default
    ``capabilities``          JSON object {capability: bool}; absent = the
                              runtime did not say (an old runtime)
    ``beat``                  JSON: the last steady beat's telemetry, which
                              the sweep writes to Postgres (sweep.flush)
- ``{ws:<id>}:auth``     hash, TTL = AUTH_CACHE_SECONDS: what the steady
                         heartbeat checks, written from the answer of every
                         Postgres call: ``token`` (sha256, hex, of the live
                         token), ``status``, ``current_task``, ``active_tasks``

Each steady beat lives in its own workspace's key, so no key is hot, and
the sweep finds them through Postgres (the online and degraded workspaces),
so no index of pending beats is needed. The sweep's own:

- ``registry:flush-cursor``  the workspace id the write-behind stopped
                             after, when a fleet took more than one sweep's
                             time budget (sweep.flush); absent = the start

Postgres is the record and Redis a cache of it: a Redis failure is logged
and counted but never fails a request; after one, Redis is skipped for a
short cool-down so a dead cache costs one short time-out per container,
not one per call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
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
    return f"{{ws:{workspace_id}}}:runtime"


def auth_key(workspace_id: str) -> str:
    return f"{{ws:{workspace_id}}}:auth"


def keys_of(workspace_id: str) -> tuple[str, ...]:
    """Every per-workspace key (what deregister and the sweep remove)."""
    return (liveness_key(workspace_id), url_key(workspace_id), internal_url_key(workspace_id), runtime_key(workspace_id), auth_key(workspace_id))


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


def _usable() -> redis.Redis | None:
    r = client()
    if r is None or time.monotonic() < _skip_until:
        return None
    return r


def _failed(what: str, workspace_id: str, err: Exception) -> None:
    global _skip_until
    _skip_until = time.monotonic() + get_settings().redis_cooldown_seconds
    count("RedisFailures")
    logger.warning("redis unavailable; continuing without it", extra={"operation": what, "workspace_id": workspace_id, "error": type(err).__name__})


def _pipeline(what: str, workspace_id: str, build) -> list | None:
    """Run one pipeline (one round trip); its replies, or None without Redis."""
    r = _usable()
    if r is None:
        return None
    try:
        pipe = r.pipeline(transaction=False)
        build(pipe)
        return pipe.execute()
    except (redis.RedisError, OSError) as err:
        _failed(what, workspace_id, err)
        return None


def _run(what: str, workspace_id: str, build) -> bool:
    """Run one pipeline; True when Redis took it."""
    return _pipeline(what, workspace_id, build) is not None


# --------------------------------------------------------------- what is cached


def _auth_fields(token_hash: bytes, status: str, current_task: str, active_tasks: int) -> dict[str, str]:
    return {"token": token_hash.hex(), "status": status, "current_task": current_task, "active_tasks": str(active_tasks)}


def _runtime_fields(runtime_metadata: Any | None) -> tuple[dict[str, str], list[str]]:
    """The overrides a heartbeat sets and clears (seed rule): a positive
    idle_timeout_seconds sets it, absent or <= 0 clears it, as does a
    heartbeat without runtime_metadata; capabilities are replaced when sent,
    cleared when runtime_metadata is absent, kept otherwise."""
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
    return fields, clear


def mark_registered(workspace_id: str, url: str, internal_url: str, auth: dict[str, str] | None = None) -> bool:
    """After a register: liveness, URL caches and (with ``auth``, when the
    caller presented its live token) what the steady heartbeat checks. A
    token the register just minted is never cached: its first use must
    reach Postgres, which confirms it."""
    settings = get_settings()
    ttl = settings.liveness_ttl_seconds

    def build(pipe):
        pipe.set(liveness_key(workspace_id), "online", ex=ttl)
        pipe.set(url_key(workspace_id), url, ex=URL_CACHE_TTL_SECONDS)
        pipe.set(internal_url_key(workspace_id), internal_url, ex=URL_CACHE_TTL_SECONDS)
        pipe.hset(runtime_key(workspace_id), "last_heartbeat_at", f"{time.time():.3f}")
        pipe.expire(runtime_key(workspace_id), ttl)
        _write_auth(pipe, workspace_id, auth, settings.auth_cache_seconds)

    return _run("register", workspace_id, build)


def _write_auth(pipe, workspace_id: str, auth: dict[str, str] | None, seconds: int) -> None:
    key = auth_key(workspace_id)
    if auth is None or seconds <= 0:
        pipe.delete(key)
        return
    pipe.hset(key, mapping=auth)
    pipe.expire(key, seconds)


def auth_for(token_hash: bytes | None, authorized_by: str | None, status: str, current_task: str, active_tasks: int) -> dict[str, str] | None:
    """What the steady heartbeat may check, from a Postgres answer: only a
    live token the caller presented (a grandfathered workspace has none, and
    a token Postgres had not confirmed would never be confirmed)."""
    if authorized_by != "token" or token_hash is None:
        return None
    return _auth_fields(token_hash, status, current_task, active_tasks)


def write_heartbeat(workspace_id: str, runtime_metadata: Any | None, auth: dict[str, str] | None = None) -> bool:
    """The Postgres path's Redis write: refresh liveness, store the runtime
    overrides and what the next steady heartbeat checks, in one pipeline.

    SET (not the seed's EXPIRE) so a key lost in a cache failover is back on
    the next heartbeat instead of staying missing until the next register.
    """
    settings = get_settings()
    ttl = settings.liveness_ttl_seconds
    fields, clear = _runtime_fields(runtime_metadata)

    def build(pipe):
        pipe.set(liveness_key(workspace_id), "online", ex=ttl)
        key = runtime_key(workspace_id)
        pipe.hset(key, mapping=fields)
        if clear:
            pipe.hdel(key, *clear)
        pipe.expire(key, ttl)
        _write_auth(pipe, workspace_id, auth, settings.auth_cache_seconds)

    return _run("heartbeat", workspace_id, build)


def refresh_auth(workspace_id: str, auth: dict[str, str] | None) -> bool:
    """After a Postgres call that changes no task field (update-card)."""
    return _run("auth-cache", workspace_id, lambda pipe: _write_auth(pipe, workspace_id, auth, get_settings().auth_cache_seconds))


def read(workspace_id: str) -> dict[str, Any] | None:
    """What Redis holds for one workspace, for operators (GET /admin/
    workspaces/{id}): each key's value and the seconds it has left, in one
    pipeline. None when Redis is unset or unavailable (logged and counted
    as for writes): the caller shows the record without it."""
    r = _usable()
    if r is None:
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
        for key in (runtime_key(workspace_id), auth_key(workspace_id)):
            pipe.hgetall(key)
            pipe.pttl(key)
        answers = pipe.execute()
    except (redis.RedisError, OSError) as err:
        _failed("read", workspace_id, err)
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
    runtime = {text(k): text(v) for k, v in answers[-4].items()}
    for name in ("capabilities", "beat"):
        if name in runtime:
            try:
                runtime[name] = json.loads(runtime[name])
            except ValueError:
                pass  # shown as stored
    found["runtime"] = {"key": runtime_key(workspace_id), "fields": runtime, "ttl_seconds": seconds(answers[-3])}
    # What the steady heartbeat checks, without the token's hash: only
    # whether one is cached.
    auth = {text(k): text(v) for k, v in answers[-2].items()}
    cached_token = auth.pop("token", None) is not None
    found["auth_cache"] = {"key": auth_key(workspace_id), "fields": auth, "token_cached": cached_token, "ttl_seconds": seconds(answers[-1])}
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
            for key in keys_of(ws):
                pipe.delete(key)

    return _run("clear", workspace_ids[0] if len(workspace_ids) == 1 else f"{len(workspace_ids)} workspaces", build)


# ------------------------------------------------------------ peer discovery


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


# --------------------------------------------------------- the steady heartbeat

# One script, one round trip: check everything the steady path needs, then
# refresh liveness and record the beat. Answers 'steady', or why not.
# KEYS: liveness, auth, runtime (one slot: see the module docstring).
# ARGV: token sha256 hex, current_task, active_tasks, the statuses this
# beat's signal leaves unchanged (",online,failed,"), liveness TTL,
# the runtime fields to set (JSON object) and to clear (JSON array), the
# beat's telemetry (JSON).
_STEADY_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'no liveness key' end
local known = redis.call('HMGET', KEYS[2], 'token', 'status', 'current_task', 'active_tasks')
if not known[1] then return 'not cached' end
if known[1] ~= ARGV[1] then return 'token' end
if known[3] ~= ARGV[2] or known[4] ~= ARGV[3] then return 'task' end
if not string.find(ARGV[4], ',' .. known[2] .. ',', 1, true) then return 'status' end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local set = cjson.decode(ARGV[6])
for field, value in pairs(set) do redis.call('HSET', KEYS[3], field, value) end
for _, field in ipairs(cjson.decode(ARGV[7])) do redis.call('HDEL', KEYS[3], field) end
redis.call('HSET', KEYS[3], 'beat', ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 'steady'
"""
_steady_sha: str | None = None


def steady_beat(workspace_id: str, token_hash: bytes, current_task: str, active_tasks: int, quiet_statuses: Iterable[str], runtime_metadata: Any | None, telemetry: dict[str, Any]) -> str:
    """Try the steady path: one script, one round trip. 'steady' when the
    beat was recorded, otherwise why not ('not cached', 'token', 'task',
    'status', 'no liveness key', 'redis unavailable'), and the caller takes
    the Postgres path."""
    global _steady_sha
    r = _usable()
    if r is None:
        return "redis unavailable"
    settings = get_settings()
    fields, clear_fields = _runtime_fields(runtime_metadata)
    keys = (liveness_key(workspace_id), auth_key(workspace_id), runtime_key(workspace_id))
    args = (
        token_hash.hex(),
        current_task,
        str(active_tasks),
        "," + ",".join(quiet_statuses) + ",",
        settings.liveness_ttl_seconds,
        json.dumps(fields),
        json.dumps(clear_fields),
        json.dumps({**telemetry, "at": fields["last_heartbeat_at"]}, separators=(",", ":"), ensure_ascii=False),
    )
    try:
        if _steady_sha is None:
            _steady_sha = r.script_load(_STEADY_LUA)
        try:
            answer = r.evalsha(_steady_sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # Redis restarted or failed over since this container loaded it.
            _steady_sha = r.script_load(_STEADY_LUA)
            answer = r.evalsha(_steady_sha, len(keys), *keys, *args)
        return answer.decode() if isinstance(answer, bytes) else str(answer)
    except (redis.RedisError, OSError) as err:
        _failed("steady heartbeat", workspace_id, err)
    return "redis unavailable"


# ------------------------------------------------------------- write-behind


def read_for_flush(workspace_ids: list[str]) -> list[dict[str, Any]]:
    """For each workspace, its last steady beat and what the steady path
    checks (token, status), in one pipeline; only workspaces with either.
    Raises redis.RedisError/OSError when Redis cannot be read: the sweep
    must then not decide on Postgres alone (sweep.run)."""
    r = client()
    if r is None or not workspace_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for ws in workspace_ids:
        pipe.hget(runtime_key(ws), "beat")
        pipe.hmget(auth_key(ws), "token", "status")
    answers = pipe.execute()
    out = []
    for i, ws in enumerate(workspace_ids):
        raw, (token, cached_status) = answers[2 * i], answers[2 * i + 1]
        beat = None
        if raw:
            try:
                beat = json.loads(raw)
            except ValueError:
                beat = None  # not ours to trust; the next beat rewrites it
        if beat is not None or token is not None:
            text = (lambda v: v.decode() if isinstance(v, bytes) else v)
            out.append({"id": ws, "beat": beat, "token": text(token), "status": text(cached_status)})
    return out


FLUSH_CURSOR_KEY = "registry:flush-cursor"


def flush_cursor() -> str | None:
    """Where the last sweep's write-behind stopped (None: at the start).
    Raises on Redis errors, like read_for_flush."""
    r = client()
    return None if r is None else _text(r.get(FLUSH_CURSOR_KEY))


def set_flush_cursor(after: str | None) -> None:
    """Remember where the write-behind stopped; None: it went round."""
    r = client()
    if r is None:
        return
    if after is None:
        r.delete(FLUSH_CURSOR_KEY)
    else:
        r.set(FLUSH_CURSOR_KEY, after)


# Re-arm what the steady path checks when Postgres still agrees with it
# (same token live, same status); otherwise drop it, so the next heartbeat
# takes the Postgres path. KEYS: auth. ARGV: token hex, status, TTL.
_REARM_LUA = """
local known = redis.call('HMGET', KEYS[1], 'token', 'status')
if known[1] == ARGV[1] and known[2] == ARGV[2] then
    return redis.call('EXPIRE', KEYS[1], ARGV[3])
end
redis.call('DEL', KEYS[1])
return 0
"""
_rearm_sha: str | None = None


def rearm(confirmed: list[tuple[str, str, str]], dropped: list[str]) -> None:
    """The sweep's verdict on what Redis knows, in one pipeline:
    ``confirmed`` (workspace, token hex, status Postgres holds) are kept for
    AUTH_CACHE_SECONDS more if Redis still holds exactly that; ``dropped``
    are removed. Raises on Redis errors (the caller logs)."""
    global _rearm_sha
    r = client()
    if r is None or not (confirmed or dropped):
        return
    if _rearm_sha is None:
        _rearm_sha = r.script_load(_REARM_LUA)
    seconds = get_settings().auth_cache_seconds
    for attempt in (1, 2):
        pipe = r.pipeline(transaction=False)
        for ws, token, status in confirmed:
            pipe.evalsha(_rearm_sha, 1, auth_key(ws), token, status, seconds)
        for ws in dropped:
            pipe.delete(auth_key(ws))
        answers = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
            _rearm_sha = r.script_load(_REARM_LUA)
            continue
        errors = [a for a in answers if isinstance(a, Exception)]
        if errors:
            raise errors[0]
        return
