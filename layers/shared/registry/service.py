"""The registry's operations. Handlers parse the request and call one of
these; each makes one Postgres call (registry/sql/), at most one Redis
pipeline and at most one PutEvents plus its marking, in that order
(DESIGN.md's round-trip budget). A steady heartbeat makes one Redis round
trip and nothing else (``_steady``).

The SQL function decides: it answers a named outcome, read by name
(statements.py), and this module only maps that outcome to the HTTP answer
(``_refusal``) and does the side effects of a success. Order matters:
Postgres is the record, so it is written first and alone decides the
answer; Redis and EventBridge follow and their failures are absorbed (a
stale cache heals on the next heartbeat, an unpublished event stays pending
in structure_events for the relay).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from registry import db, events, limits, liveness, statements, status, tokens, urlguard
from registry.api import ApiError, Credentials, unauthorized
from registry.models import DeregisterPayload, HeartbeatPayload, RegisterPayload, UpdateCardPayload
from registry.observability import count, logger
from registry.settings import get_settings, saas_mode, steady_path_enabled

# Swapped by tests and the local runner; production resolves with DNS.
resolver: urlguard.Resolver = urlguard.resolve_with_dns

NOT_REGISTERED = "workspace is not registered; call /registry/register first"
REMOVED = "workspace is removed"

R = TypeVar("R")


def _call(sql: str, result: type[R], params: dict[str, Any]) -> R:
    """One request function, one round trip, its row by name."""
    return statements.read(result, db.fetch(sql, params)[0])


def _refusal(outcome: str, operation: str, workspace_id: str, credentials: Credentials) -> ApiError:
    """The answer to every outcome other than 'ok'. The decision was the SQL
    function's; only the wording is chosen here."""
    if outcome == "not_registered":
        return ApiError(404, NOT_REGISTERED)
    if outcome == "removed":
        return ApiError(410, REMOVED)
    logger.warning(f"{operation} refused: {outcome}", extra={"workspace_id": workspace_id})
    if outcome == "unauthorized":
        return unauthorized(credentials)
    if outcome in ("secret_required", "secret_invalid"):
        count("AuthFailures")
        return ApiError(401, "registration secret required" if outcome == "secret_required" else "invalid registration secret")
    raise RuntimeError(f"{operation}: unknown outcome {outcome!r}")  # a bug: answered 500, logged


def require_token() -> bool:
    """REQUIRE_WORKSPACE_TOKENS: no grandfathering of token-less workspaces."""
    return get_settings().require_workspace_tokens


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _card(card: dict[str, Any]) -> str:
    """The card as sent to Postgres, once its stored size is within the
    limit (registry/limits.py): refused with 413 before anything is
    written, so no event that carries it can outgrow PutEvents."""
    try:
        limits.check_card(card)
    except limits.TooLarge as err:
        raise ApiError(413, str(err)) from None
    return _json(card)


def register(payload: RegisterPayload, credentials: Credentials) -> dict[str, str]:
    # C6: refuse SSRF-capable URLs before anything is stored or cached.
    try:
        urlguard.validate_agent_url(payload.url, saas=saas_mode(), resolve=resolver)
    except urlguard.URLRefused as refusal:
        count("URLsRefused")
        raise ApiError(400, str(refusal)) from None

    card = _card(payload.agent_card)
    # Minted before the call so the function can store its hash; used only
    # if the function says this registration mints.
    candidate = tokens.mint()
    secret = payload.registration_secret
    settings = get_settings()
    result = _call(
        statements.REGISTER,
        statements.Registered,
        {
            "id": payload.id,
            "url": payload.url,
            "card": card,
            "token_hash": credentials.token_hash,
            "new_token_hash": candidate.sha256,
            "new_token_prefix": candidate.prefix,
            "secret_hash": tokens.hash_secret(secret) if secret else None,
            "require_secret": settings.require_registration_secret,
            "recovery_seconds": settings.token_recovery_seconds,
        },
    )
    if result.outcome != "ok":
        raise _refusal(result.outcome, "register", payload.id, credentials)

    # The kept provisioner URL (when there is one) is where the platform
    # dispatches; the reported URL serves workspace-to-workspace discovery.
    # A registration that minted nothing was authorized by the live token
    # the caller presented, so the steady heartbeat may check it.
    auth = None if result.minted else liveness.auth_for(credentials.token_hash, "token", "online", result.current_task, result.active_tasks)
    liveness.mark_registered(payload.id, url=result.stored_url, internal_url=payload.url, auth=auth)
    events.publish([events.recorded(result, payload.id)])
    count("Registrations")

    body = {"status": "registered"}
    if result.minted:
        # Shown once; only its sha256 is stored.
        body["auth_token"] = candidate.plaintext
        count("TokensMinted")
    if result.minted == "reissued":
        # The first answer never reached the agent: its unconfirmed token
        # was revoked and this one replaces it (sql/register.sql).
        count("TokensReissued")
        logger.warning("unconfirmed token reissued: the first register answer was lost", extra={"workspace_id": payload.id, "token_prefix": candidate.prefix})
    logger.info("workspace registered", extra={"workspace_id": payload.id, "previous_status": result.prior_status, "token_minted": result.minted})
    return body


def _steady(payload: HeartbeatPayload, credentials: Credentials, signal: status.Signal) -> bool:
    """The steady path (how Consul and Eureka keep heartbeats cheap): the
    caller presents the live token Redis knows, the status rules change
    nothing for the status Redis knows, and the task fields are unchanged.
    Then one Redis script refreshes liveness and records the beat, which the
    sweep writes to Postgres in batches before it decides anything. Any
    doubt (nothing cached, Redis down, a mismatch) takes the Postgres path,
    which also refreshes what Redis knows. What Redis knows is valid only
    while the liveness key exists (the platform deletes it when it removes,
    restarts or hibernates a workspace) and for AUTH_CACHE_SECONDS after a
    Postgres call wrote it: a change made directly in Postgres is seen
    within that time.
    """
    if credentials.token_hash is None or not steady_path_enabled():
        return False
    outcome = liveness.steady_beat(
        payload.workspace_id,
        credentials.token_hash,
        payload.current_task,
        payload.active_tasks,
        status.quiet_statuses(signal),
        payload.runtime_metadata,
        {
            "error_rate": payload.error_rate,
            "sample_error": payload.sample_error,
            "uptime_seconds": payload.uptime_seconds,
            "monthly_spend": payload.spend_to_store(),
        },
    )
    return outcome == "steady"


def heartbeat(payload: HeartbeatPayload, credentials: Credentials) -> dict[str, str]:
    signal = status.Signal(payload.error_rate, payload.runtime_state, payload.sample_error)
    if _steady(payload, credentials, signal):
        count("SteadyHeartbeats")
        if get_settings().publish_heartbeat_events:
            events.publish([_heartbeat_event(payload)])
        return {"status": "ok"}

    result = _call(
        statements.HEARTBEAT,
        statements.Heartbeat,
        {
            "id": payload.workspace_id,
            "token_hash": credentials.token_hash,
            "require_token": require_token(),
            "rules": _json(status.transition_table(signal)),
            "error_rate": payload.error_rate,
            "sample_error": payload.sample_error,
            "active_tasks": payload.active_tasks,
            "uptime_seconds": payload.uptime_seconds,
            "current_task": payload.current_task,
            "monthly_spend": payload.spend_to_store(),
        },
    )
    if result.outcome != "ok":
        raise _refusal(result.outcome, "heartbeat", payload.workspace_id, credentials)

    auth = liveness.auth_for(credentials.token_hash, result.authorized_by, result.new_status, payload.current_task, payload.active_tasks)
    liveness.write_heartbeat(payload.workspace_id, payload.runtime_metadata, auth)
    count("Heartbeats")

    publish = [events.recorded(result, payload.workspace_id)]
    if result.event_id is not None:
        count(f"Transitions{result.prior_status.capitalize()}To{result.new_status.capitalize()}")
        logger.info("status changed", extra={"workspace_id": payload.workspace_id, "from": result.prior_status, "to": result.new_status})
    # Only when the task changed: one event per change, not per heartbeat.
    if payload.current_task != result.previous_task:
        publish.append(
            events.Event("TASK_UPDATED", payload.workspace_id, {"current_task": payload.current_task, "active_tasks": payload.active_tasks})
        )
    if result.drain:
        # #1870: the seed spawned a goroutine; a drainer subscribed to this
        # event dispatches one queued A2A request.
        publish.append(events.Event("QUEUE_DRAIN_REQUESTED", payload.workspace_id, {"active_tasks": payload.active_tasks}))
    if get_settings().publish_heartbeat_events:
        publish.append(_heartbeat_event(payload))
    events.publish(publish)
    return {"status": "ok"}


def _heartbeat_event(payload: HeartbeatPayload) -> events.Event:
    return events.Event("WORKSPACE_HEARTBEAT", payload.workspace_id, {"active_tasks": payload.active_tasks, "uptime_seconds": payload.uptime_seconds})


def update_card(payload: UpdateCardPayload, credentials: Credentials) -> dict[str, str]:
    result = _call(
        statements.UPDATE_CARD,
        statements.CardUpdated,
        {"id": payload.workspace_id, "token_hash": credentials.token_hash, "require_token": require_token(), "card": _card(payload.agent_card)},
    )
    if result.outcome != "ok":
        raise _refusal(result.outcome, "update-card", payload.workspace_id, credentials)
    if result.authorized_by != "token":
        liveness.refresh_auth(payload.workspace_id, None)
    events.publish([events.recorded(result, payload.workspace_id)])
    count("CardUpdates")
    return {"status": "updated"}


def deregister(payload: DeregisterPayload, credentials: Credentials) -> dict[str, str]:
    """A clean shutdown: offline now, keys cleared, WORKSPACE_OFFLINE."""
    result = _call(
        statements.DEREGISTER,
        statements.Deregistered,
        {"id": payload.workspace_id, "token_hash": credentials.token_hash, "require_token": require_token()},
    )
    if result.outcome != "ok":
        raise _refusal(result.outcome, "deregister", payload.workspace_id, credentials)
    liveness.clear(payload.workspace_id)
    events.publish([events.recorded(result, payload.workspace_id)])
    count("Deregistrations")
    logger.info("workspace deregistered", extra={"workspace_id": payload.workspace_id, "from": result.prior_status, "to": result.new_status})
    return {"status": "deregistered"}
