"""Events on EventBridge: the envelope, the publisher and delivery acks.

Every event has ``detail-type`` = the seed's event name and
``detail`` = {event_id, event_type, workspace_id, occurred_at, payload}, with
the seed's payload unchanged. Consumers dedupe on ``event_id``.

Status events are recorded in ``structure_events`` by the same statement
that makes the change (so a change and its event exist together or not at
all) and start ``publish_pending``. After PutEvents accepted them, their ids
wait here and the container's next statement marks them published (the
``acked`` CTE in statements.py), keeping the hot path at one round trip. A
row whose PutEvents failed, or whose ack was lost with its container, is
published again by the relay: at-least-once.

Transient events (TASK_UPDATED, QUEUE_DRAIN_REQUESTED, WORKSPACE_HEARTBEAT)
are not recorded, as the seed's BroadcastOnly did not record them; the
next heartbeat supersedes them.

boto3 is imported on the first publish, not at cold start: a steady
heartbeat publishes nothing and should not pay for it.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from registry import db, statements
from registry.observability import count, logger
from registry.settings import get_settings

SOURCE = "workspace-registry"
MAX_ENTRIES_PER_CALL = 10  # PutEvents limit
MAX_ENTRY_BYTES = 256 * 1024  # PutEvents limit for one entry

_lock = threading.Lock()
_pending_acks: list[str] = []
_client = None


@dataclass(frozen=True)
class Event:
    event_type: str
    workspace_id: str | None  # None for registry-wide events (self-preservation)
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # True when a structure_events row (id = event_id) waits for the ack.
    recorded: bool = False

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "workspace_id": self.workspace_id,
            "occurred_at": self.occurred_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "payload": self.payload,
        }

    def entry(self, bus: str) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": self.event_type,
            "Detail": json.dumps(self.detail(), separators=(",", ":"), ensure_ascii=False),
            "EventBusName": bus,
            "Resources": [],
            "Time": self.occurred_at,
        }

    def entry_size(self, bus: str) -> int:
        """PutEvents' size of the entry (its rule: UTF-8 bytes of the
        fields, 14 bytes for Time)."""
        e = self.entry(bus)
        return 14 + sum(len(e[k].encode("utf-8")) for k in ("Source", "DetailType", "Detail", "EventBusName"))


def recorded(event_id, event_type: str, workspace_id: str | None, payload: dict, created_at: datetime) -> Event:
    """The event of a structure_events row the statement just wrote."""
    return Event(
        event_type=event_type,
        workspace_id=workspace_id,
        payload=payload or {},
        event_id=str(event_id),
        occurred_at=created_at,
        recorded=True,
    )


def _events_client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        # Short time-outs and one retry: an EventBridge outage must not eat
        # the function's time-out; the relay delivers what is left pending.
        _client = boto3.client(
            "events",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"}),
        )
    return _client


def reset_client() -> None:
    global _client
    _client = None


def put(events: list[Event]) -> tuple[list[Event], list[Event]]:
    """PutEvents in batches of 10; return (accepted, failed). Never raises.

    Only the entries EventBridge refused are retried, once (FailedEntryCount
    with per-entry error codes); what still fails is returned so recorded
    events stay pending for the relay.
    """
    if not events:
        return [], []
    from botocore.exceptions import BotoCoreError, ClientError

    bus = get_settings().event_bus_name
    accepted: list[Event] = []
    failed: list[Event] = []
    for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
        batch = events[start : start + MAX_ENTRIES_PER_CALL]
        for attempt in (1, 2):
            try:
                response = _events_client().put_events(Entries=[e.entry(bus) for e in batch])
            except (BotoCoreError, ClientError) as err:
                # The client already retried the call; the service is down.
                logger.warning("PutEvents failed; recorded events stay pending", extra={"error": type(err).__name__, "events": len(batch)})
                failed.extend(batch)
                break
            refused = []
            for event, result in zip(batch, response.get("Entries", [])):
                if result.get("EventId") and not result.get("ErrorCode"):
                    accepted.append(event)
                else:
                    refused.append((event, result.get("ErrorCode")))
            if not refused:
                break
            if attempt == 2:
                for event, code in refused:
                    logger.warning("PutEvents refused an entry", extra={"event_type": event.event_type, "error": code})
                failed.extend(event for event, _ in refused)
            batch = [event for event, _ in refused]
    if failed:
        count("EventPublishFailures", len(failed))
    return accepted, failed


def publish(events: list[Event]) -> list[Event]:
    """Put a request's events on the bus; return the ones accepted.

    Never raises: a failure is logged and counted, recorded events stay
    pending for the relay, and the request that caused them still succeeds.
    Accepted recorded events are acked by this container's next statement.
    """
    accepted, _ = put(events)
    with _lock:
        _pending_acks.extend(e.event_id for e in accepted if e.recorded)
    return accepted


def take_acks() -> list[str]:
    """Ids to mark published in the next statement (removed from the queue)."""
    with _lock:
        acks = list(_pending_acks)
        _pending_acks.clear()
    return acks


def restore_acks(acks: list[str]) -> None:
    """Put back acks whose statement failed; they go with the next one."""
    if acks:
        with _lock:
            _pending_acks[:0] = acks


def flush_acks() -> int:
    """Mark delivered events published now, in a statement of their own.

    For callers with no request to piggyback on: the local server when idle,
    a sweep, tests. Returns how many ids were sent.
    """
    acks = take_acks()
    if not acks:
        return 0
    try:
        db.fetch(statements.ACK_PUBLISHED, {"acks": acks})
    except db.DatabaseUnavailable:
        restore_acks(acks)
        raise
    return len(acks)
