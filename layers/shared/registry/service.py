"""The registry's operations. Handlers parse the request and call one of
these; each does one Postgres statement, at most one Redis pipeline and at
most one PutEvents, in that order (DESIGN.md's round-trip budget).

Order matters: Postgres is the record, so it is written first and alone
decides the answer; Redis and EventBridge follow and their failures are
absorbed (a stale cache heals on the next heartbeat, an unpublished event
stays pending in structure_events for the relay).
"""

from __future__ import annotations

import json
from typing import Any

from registry import db, events, liveness, statements, status, tokens, urlguard
from registry.api import ApiError, Credentials, unauthorized
from registry.models import DeregisterPayload, HeartbeatPayload, RegisterPayload, UpdateCardPayload
from registry.observability import count, logger
from registry.settings import get_settings, saas_mode

# Swapped by tests and the local runner; production resolves with DNS.
resolver: urlguard.Resolver = urlguard.resolve_with_dns

NOT_REGISTERED = "workspace is not registered; call /registry/register first"
REMOVED = "workspace is removed"


def _run(sql: str, params: dict[str, Any]) -> tuple:
    """One statement, carrying the acks of events published since the last."""
    acks = events.take_acks()
    params["acks"] = acks
    try:
        return db.fetch(sql, params)[0]
    except BaseException:
        events.restore_acks(acks)
        raise


def require_token() -> bool:
    """REQUIRE_WORKSPACE_TOKENS: no grandfathering of token-less workspaces."""
    return get_settings().require_workspace_tokens


def _gate(operation: str, workspace_id: str, credentials: Credentials, prior_status, has_live, token_ok, changed: bool) -> None:
    """The answer of a statement that found nothing to change, in the
    seed's order: unknown (404), not the caller's (401), removed (410)."""
    if prior_status is None:
        raise ApiError(404, NOT_REGISTERED)
    if not token_ok and (has_live or require_token()):
        logger.warning(f"{operation} refused: workspace token required", extra={"workspace_id": workspace_id})
        raise unauthorized(credentials)
    if not changed:
        raise ApiError(410, REMOVED)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def register(payload: RegisterPayload, credentials: Credentials) -> dict[str, str]:
    # C6: refuse SSRF-capable URLs before anything is stored or cached.
    try:
        urlguard.validate_agent_url(payload.url, saas=saas_mode(), resolve=resolver)
    except urlguard.URLRefused as refusal:
        count("URLsRefused")
        raise ApiError(400, str(refusal)) from None

    # Minted before the statement so the statement can store its hash; used
    # only if the statement says this registration is the one that mints.
    candidate = tokens.mint()
    secret = payload.registration_secret
    (has_live, token_ok, secret_required, secret_ok, prior_status, stored_url, minted, event_id, event_type, event_payload, created_at) = _run(
        statements.REGISTER,
        {
            "id": payload.id,
            "url": payload.url,
            "card": _json(payload.agent_card),
            "token_hash": credentials.token_hash,
            "new_token_hash": candidate.sha256,
            "new_token_prefix": candidate.prefix,
            "secret_hash": tokens.hash_secret(secret) if secret else None,
            "require_secret": get_settings().require_registration_secret,
        },
    )
    if has_live and not token_ok:
        # C18: someone else's workspace id; nothing was written.
        logger.warning("register refused: workspace token required", extra={"workspace_id": payload.id})
        raise unauthorized(credentials)
    if not has_live and secret_required and not secret_ok:
        logger.warning("register refused: registration secret required", extra={"workspace_id": payload.id})
        count("AuthFailures")
        reason = "invalid registration secret" if secret else "registration secret required"
        raise ApiError(401, reason)
    if stored_url is None:
        raise ApiError(410, REMOVED)

    # The kept provisioner URL (when there is one) is where the platform
    # dispatches; the reported URL serves workspace-to-workspace discovery.
    liveness.mark_registered(payload.id, url=stored_url, internal_url=payload.url)
    events.publish([events.recorded(event_id, event_type, payload.id, event_payload, created_at)])
    count("Registrations")

    body = {"status": "registered"}
    if minted:
        # Shown once; only its sha256 is stored.
        body["auth_token"] = candidate.plaintext
        count("TokensMinted")
    logger.info("workspace registered", extra={"workspace_id": payload.id, "previous_status": prior_status, "token_minted": minted})
    return body


def heartbeat(payload: HeartbeatPayload, credentials: Credentials) -> dict[str, str]:
    signal = status.Signal(payload.error_rate, payload.runtime_state, payload.sample_error)
    (prior_status, has_live, token_ok, previous_task, new_status, event_id, event_type, event_payload, created_at, drain) = _run(
        statements.HEARTBEAT,
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
    _gate("heartbeat", payload.workspace_id, credentials, prior_status, has_live, token_ok, new_status is not None)

    liveness.write_heartbeat(payload.workspace_id, payload.runtime_metadata)
    count("Heartbeats")

    publish = []
    if event_id is not None:
        publish.append(events.recorded(event_id, event_type, payload.workspace_id, event_payload, created_at))
        count(f"Transitions{prior_status.capitalize()}To{new_status.capitalize()}")
        logger.info("status changed", extra={"workspace_id": payload.workspace_id, "from": prior_status, "to": new_status})
    # Only when the task changed: one event per change, not per heartbeat.
    if payload.current_task != previous_task:
        publish.append(
            events.Event("TASK_UPDATED", payload.workspace_id, {"current_task": payload.current_task, "active_tasks": payload.active_tasks})
        )
    if drain:
        # #1870: the seed spawned a goroutine; a drainer subscribed to this
        # event dispatches one queued A2A request.
        publish.append(events.Event("QUEUE_DRAIN_REQUESTED", payload.workspace_id, {"active_tasks": payload.active_tasks}))
    if get_settings().publish_heartbeat_events:
        publish.append(
            events.Event("WORKSPACE_HEARTBEAT", payload.workspace_id, {"active_tasks": payload.active_tasks, "uptime_seconds": payload.uptime_seconds})
        )
    events.publish(publish)
    return {"status": "ok"}


def update_card(payload: UpdateCardPayload, credentials: Credentials) -> dict[str, str]:
    (prior_status, has_live, token_ok, updated, event_id, event_type, event_payload, created_at) = _run(
        statements.UPDATE_CARD,
        {"id": payload.workspace_id, "token_hash": credentials.token_hash, "require_token": require_token(), "card": _json(payload.agent_card)},
    )
    _gate("update-card", payload.workspace_id, credentials, prior_status, has_live, token_ok, updated)
    events.publish([events.recorded(event_id, event_type, payload.workspace_id, event_payload, created_at)])
    count("CardUpdates")
    return {"status": "updated"}


def deregister(payload: DeregisterPayload, credentials: Credentials) -> dict[str, str]:
    """A clean shutdown: offline now, keys cleared, WORKSPACE_OFFLINE."""
    (prior_status, has_live, token_ok, new_status, event_id, event_type, event_payload, created_at) = _run(
        statements.DEREGISTER, {"id": payload.workspace_id, "token_hash": credentials.token_hash, "require_token": require_token()}
    )
    _gate("deregister", payload.workspace_id, credentials, prior_status, has_live, token_ok, new_status is not None)
    liveness.clear(payload.workspace_id)
    if event_id is not None:
        events.publish([events.recorded(event_id, event_type, payload.workspace_id, event_payload, created_at)])
    count("Deregistrations")
    logger.info("workspace deregistered", extra={"workspace_id": payload.workspace_id, "from": prior_status, "to": new_status})
    return {"status": "deregistered"}
