"""Peer discovery, the registry's read side (seed: discovery.go and
access.go; issue #13): discover, peers and check-access.

Each is one call of a request function (registry/sql/discover.sql,
peers.sql, check_access.sql) behind the token gate every request uses
(registry_authorize_v2); the access rule is one SQL function
(registry_can_communicate_v1), so a discovery is one Postgres round trip
however deep the tree. This module maps the outcomes to answers, chooses the
URL a discovery hands out, checks it again with the URL guard, and keeps the
Redis fast path. docs/discovery.md explains each decision.

Discover, in this order:
  400  no X-Workspace-ID, or an id that is not a UUID
  401  the caller's token gate (as a heartbeat's; REQUIRE_WORKSPACE_TOKENS)
  410  the caller is removed
  404  no such target
  403  the access rule says no
  503  the target is removed, or not reachable, or its URL fails the guard
  200  {"id", "url", "name"}, the URL in the seed's order: an external
       target's registered URL (127.0.0.1/localhost as host.docker.internal
       for a caller that is not external itself), else the cached internal
       URL, else, for an online or degraded target, INTERNAL_URL_TEMPLATE.

The fast path: a 200 given to a caller that presented its token is kept in
Redis for DISCOVER_CACHE_SECONDS (liveness.discover_key), bound to the
sha256 of that token and to what Redis says of the target at the time (its
cached internal URL, its liveness key). A later discovery of the same pair
reads it, the internal URL and the liveness key in one pipeline, and when
all three still agree answers from Redis alone, with no Postgres round trip.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from registry import db, liveness, service, statements, urlguard
from registry.api import ApiError, Credentials, unauthorized, workspace_id
from registry.models import CheckAccessPayload
from registry.observability import count, logger
from registry.settings import fill_internal_url, get_settings, saas_mode

CALLER_REQUIRED = "X-Workspace-ID header is required"
NOT_AUTHORIZED = "not authorized to discover this workspace"
NOT_FOUND = "workspace not found"
NOT_AVAILABLE = "workspace not available"
UNSAFE = "workspace URL failed safety check"
# Where the seed synthesises a URL for a target nobody cached one for.
REACHABLE = ("online", "degraded")
# The seed rewrites these hosts for callers inside Docker (Phase 30.6).
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
DOCKER_HOST = "host.docker.internal"


def _json(value: Any) -> str:
    # One spelling for one answer: the ETag is a hash of these bytes.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _call(sql: str, result: type, params: dict[str, Any]):
    """One request function, one round trip, its row by name."""
    return statements.read(result, db.fetch(sql, params)[0])


def _refusal(outcome: str, operation: str, workspace: str, credentials: Credentials) -> ApiError:
    """The answer to every outcome other than 'ok' (decided in SQL)."""
    if outcome in ("not_found", "not_registered"):
        return ApiError(404, NOT_FOUND)
    logger.warning(f"{operation} refused: {outcome}", extra={"workspace_id": workspace})
    if outcome == "unauthorized":
        return unauthorized(credentials)
    if outcome == "removed":
        return ApiError(410, service.REMOVED)
    if outcome == "forbidden":
        count("DiscoveryForbidden")
        return ApiError(403, NOT_AUTHORIZED)
    raise RuntimeError(f"{operation}: unknown outcome {outcome!r}")  # a bug: answered 500, logged


# ------------------------------------------------------------------ URLs


def for_docker_callers(url: str) -> str:
    """An external target's URL as a caller inside Docker must dial it: a
    host of 127.0.0.1 or localhost is the Docker host, host.docker.internal
    (seed Phase 30.6). Only the host is rewritten; the seed replaced the
    first occurrence of either string anywhere in the URL (a path or query
    holding "localhost" was rewritten, a host holding it mangled)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return url  # the guard refuses it with the reason
    if host not in _LOOPBACK_HOSTS or "//" not in url:
        return url
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{DOCKER_HOST}" + (f":{port}" if port is not None else "")
    start = url.index("//") + 2  # netloc is exactly what follows the first //
    return url[:start] + netloc + url[start + len(parts.netloc) :]


def _guard(url: str, workspace: str, *, resolve: bool) -> None:
    """#1484: a URL is checked again when it is handed out. With resolve,
    its name is looked up now (a name that resolved to a public address at
    registration may point at a blocked one today: DNS rebinding); without,
    everything but the lookup is checked, so a literal blocked address is
    never handed out. 503, logged, when refused."""
    try:
        urlguard.validate_agent_url(
            url, saas=saas_mode(), resolve=service.resolver if resolve else None, allowed_names=urlguard.DISCOVERY_NAMES
        )
    except urlguard.URLRefused as refusal:
        count("DiscoveryURLsRefused")
        logger.warning("discovery: refusing to hand out an unsafe URL (#1484)", extra={"workspace_id": workspace, "reason": str(refusal)})
        raise ApiError(503, UNSAFE) from None


def _unavailable(status: str | None) -> ApiError:
    return ApiError(503, NOT_AVAILABLE, fields={"status": status})


# ------------------------------------------------------------------ discover


def discover(caller_header: str | None, target_param: str, credentials: Credentials) -> str:
    """The answer's JSON text for GET /registry/discover/{id}; ApiError otherwise."""
    # Blanks around a header value are not part of it (RFC 9110 OWS).
    caller_header = (caller_header or "").strip()
    if not caller_header:
        raise ApiError(400, CALLER_REQUIRED)
    caller = workspace_id(caller_header, "X-Workspace-ID header")
    target = workspace_id(target_param, "workspace id in the path")
    ttl = get_settings().discover_cache_seconds
    # Only an answer given on a token can be kept: the entry is bound to it.
    cacheable = ttl > 0 and credentials.token_hash is not None

    view = liveness.read_discovery(caller, target, with_answer=cacheable)
    if view is not None and view.answer is not None:
        body = _from_cache(view, credentials, target)
        if body is not None:
            count("DiscoverCacheHits")
            count("Discoveries")
            return body
    if cacheable:
        count("DiscoverCacheMisses")

    row = _call(
        statements.DISCOVER,
        statements.Discovered,
        {"caller": caller, "target": target, "token_hash": credentials.token_hash, "require_token": service.require_token()},
    )
    if row.outcome != "ok":
        raise _refusal(row.outcome, "discover", caller, credentials)

    url, external, built = _choose_url(row, target, view)
    body = _json({"id": row.target_id, "url": url, "name": row.target_name})
    entry = None
    # Kept only when what it is bound to can be checked on a hit: the token
    # (a live one, not a grandfathered caller), the target itself (not a
    # forwarding, whose end Redis does not know) and its liveness key.
    if cacheable and row.authorized_by == "token" and row.target_id == target and view is not None and view.live:
        # The basis is the internal URL Redis will hold after this write.
        basis = built[1] if built is not None else view.internal_url
        entry = _json({"token": credentials.token_hash.hex(), "basis": basis, "dns": external, "body": body})
    liveness.write_discovery(caller, target, answer=entry, ttl=ttl, internal_url=built)
    count("Discoveries")
    return body


def _from_cache(view: liveness.DiscoveryView, credentials: Credentials, target: str) -> str | None:
    """The kept answer when it still holds: the same token, the target still
    live, its internal URL unchanged (a new registration rewrites it), and
    an external target's URL still passing the guard with DNS resolved now."""
    try:
        entry = json.loads(view.answer)
        body = entry["body"]
        if not isinstance(body, str) or entry["token"] != credentials.token_hash.hex():
            return None
        if not view.live or entry["basis"] != view.internal_url:
            return None
        if entry["dns"]:
            urlguard.validate_agent_url(
                json.loads(body)["url"], saas=saas_mode(), resolve=service.resolver, allowed_names=urlguard.DISCOVERY_NAMES
            )
    except urlguard.URLRefused:
        return None  # the Postgres path decides again, and answers 503 logged
    except (ValueError, KeyError, TypeError):
        return None  # not an entry this code wrote: ignored, overwritten
    return body


def _choose_url(row: statements.Discovered, target: str, view: liveness.DiscoveryView | None) -> tuple[str, bool, tuple[str, str] | None]:
    """(url, whether it is an external target's, the internal URL built for
    caching), in the seed's order; ApiError 503 when there is none."""
    if row.target_status == "removed":
        # A tombstone is never handed out (the seed still did, for external
        # targets and from a cache the platform had not cleared yet).
        raise _unavailable(row.target_status)
    answered = row.target_id
    if row.target_runtime == "external" and row.target_url:
        url = row.target_url if row.caller_runtime == "external" else for_docker_callers(row.target_url)
        _guard(url, answered, resolve=True)
        return url, True, None

    # Workspace to workspace: names here resolve in the callers' network
    # (Docker's, the VPC's), not the Lambda's, so no lookup (docs/discovery.md).
    if answered == target:
        cached = view.internal_url if view is not None else None
    else:
        cached = liveness.internal_url(answered)
    if cached:
        _guard(cached, answered, resolve=False)
        return cached, False, None
    if row.target_status in REACHABLE:
        template = get_settings().internal_url_template
        url = fill_internal_url(template, answered) if template else row.target_url
        if url:
            _guard(url, answered, resolve=False)
            return url, False, (answered, url)
    raise _unavailable(row.target_status)


# ------------------------------------------------------------------ peers


def peers(workspace_param: str, query: str | None, credentials: Credentials) -> str:
    """The answer's JSON text for GET /registry/{id}/peers[?q=]."""
    workspace = workspace_id(workspace_param, "workspace id in the path")
    row = _call(
        statements.PEERS,
        statements.Peers,
        {"id": workspace, "token_hash": credentials.token_hash, "require_token": service.require_token()},
    )
    if row.outcome != "ok":
        raise _refusal(row.outcome, "peers", workspace, credentials)
    listed = row.peers or []
    # #1038: case-insensitive substring of name or role, after the read as
    # the seed did (no text of the caller's reaches SQL).
    needle = (query or "").strip().lower()
    if needle:
        listed = [p for p in listed if needle in (p.get("name") or "").lower() or needle in (p.get("role") or "").lower()]
    for peer in listed:
        peer["url"] = _listed_url(peer.get("url") or "", peer.get("id"))
    count("PeerListings")
    return _json(listed)


def _listed_url(url: str, workspace: str | None) -> str:
    """A peer's registered URL, or "" (the seed's "no URL") when it is a
    literal address the guard refuses: a listing never hands one out. Names
    are not looked up: a list of fifty peers must not cost fifty lookups, and
    discover checks the URL a caller actually dials."""
    if not url:
        return ""
    try:
        urlguard.validate_agent_url(url, saas=saas_mode(), resolve=None, allowed_names=urlguard.DISCOVERY_NAMES)
    except urlguard.URLRefused as refusal:
        count("DiscoveryURLsRefused")
        logger.warning("peers: leaving out an unsafe URL (#1484)", extra={"workspace_id": workspace, "reason": str(refusal)})
        return ""
    return url


# ------------------------------------------------------------------ check-access


def check_access(payload: CheckAccessPayload, credentials: Credentials) -> dict[str, bool]:
    row = _call(
        statements.CHECK_ACCESS,
        statements.AccessChecked,
        {
            "caller": payload.caller_id,
            "target": payload.target_id,
            "token_hash": credentials.token_hash,
            "require_token": service.require_token(),
        },
    )
    if row.outcome != "ok":
        raise _refusal(row.outcome, "check-access", payload.caller_id, credentials)
    count("AccessChecks")
    return {"allowed": bool(row.allowed)}
