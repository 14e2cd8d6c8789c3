"""Events on EventBridge: the envelope, the publisher, delivery.

Every event has ``detail-type`` = the seed's event name and
``detail`` = {event_id, event_type, workspace_id, sequence, occurred_at,
payload}, with the seed's payload unchanged. Consumers order one
workspace's events by ``sequence`` (the workspace's revision, incremented by
every write that records an event) and dedupe on ``event_id``.

Status events are recorded in ``structure_events`` by the same statement
that makes the change (so a change and its event exist together or not at
all) and start ``publish_pending``. The request publishes them right after
its statement and, when PutEvents accepted them, marks them published in one
more round trip (only then). A row whose PutEvents failed, or whose marking
was lost with its container, is published again by the relay: a duplicate
only follows a real failure.

Transient events (TASK_UPDATED, QUEUE_DRAIN_REQUESTED, WORKSPACE_HEARTBEAT)
are not recorded, as the seed's BroadcastOnly did not record them; the
next heartbeat supersedes them.

boto3 is imported on the first publish, not at cold start: a steady
heartbeat publishes nothing and should not pay for it.
"""

from __future__ import annotations

import json
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

_client = None


@dataclass(frozen=True)
class Event:
    event_type: str
    workspace_id: str | None  # None for registry-wide events (self-preservation)
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # The workspace's revision this event announces; None for transient and
    # registry-wide events, which change no workspace.
    sequence: int | None = None
    # True when a structure_events row (id = event_id) waits to be marked.
    recorded: bool = False

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "workspace_id": self.workspace_id,
            "sequence": self.sequence,
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


def recorded(row: Any, workspace_id: str | None = None) -> Event | None:
    """The event of a structure_events row a statement recorded, or None
    when it recorded none. ``row`` is a statements.Recorded or a dict with
    the same names (the relay's and the sweep's rows also name the
    workspace)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name, None)
    if get("event_id") is None:
        return None
    return Event(
        event_type=get("event_type"),
        workspace_id=get("workspace_id") or workspace_id,
        payload=get("event_payload") or {},
        event_id=str(get("event_id")),
        occurred_at=get("occurred_at"),
        sequence=get("revision"),
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


def publish(events: list[Event | None]) -> list[Event]:
    """Put a request's events on the bus and mark the recorded ones that
    EventBridge accepted as published; return the accepted ones.

    Never raises: a failure is logged and counted, recorded events stay
    pending for the relay, and the request that caused them still succeeds.
    """
    accepted, _ = put([e for e in events if e is not None])
    mark_published([e for e in accepted if e.recorded])
    return accepted


def mark_published(accepted: list[Event]) -> None:
    """One round trip, only when something recorded was accepted. If it
    fails the rows stay pending and the relay publishes them again after its
    grace period: consumers dedupe on event_id."""
    if not accepted:
        return
    try:
        db.fetch(statements.MARK_PUBLISHED, {"ids": [e.event_id for e in accepted]})
    except db.DatabaseUnavailable:
        count("EventMarkFailures", len(accepted))
        logger.warning("published events could not be marked; the relay will publish them again", extra={"events": len(accepted)})
