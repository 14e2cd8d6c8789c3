"""The event relay: delivers every recorded event not yet published.

A status event is recorded in structure_events by the statement that makes
the change and is normally published and marked right after by the request
itself. When that publish failed (EventBridge down), or the function died
between commit and PutEvents or between PutEvents and the marking, the row
stays pending; the relay, run by every liveness sweep, publishes pending
rows older than the grace period (a request that is still publishing its
own events is left to do it) oldest first, in PutEvents batches, retrying
only refused entries, and marks what was accepted. At-least-once: only a
real failure makes a duplicate, and consumers dedupe on event_id.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry import db, events, statements
from registry.observability import count, logger, metrics
from registry.settings import get_settings


@dataclass
class RelayResult:
    published: int = 0
    failed: int = 0
    dropped: int = 0
    oldest_pending_seconds: float = 0.0
    pending: int = 0


def run(grace_seconds: int | None = None, max_events: int | None = None) -> RelayResult:
    settings = get_settings()
    grace = settings.event_relay_grace_seconds if grace_seconds is None else grace_seconds
    budget = settings.event_relay_max_events if max_events is None else max_events
    bus = settings.event_bus_name
    result = RelayResult()
    while budget > 0:
        batch_size = min(events.MAX_ENTRIES_PER_CALL, budget)
        # One short transaction per batch: the claimed rows stay locked
        # (another relay skips them) only while their PutEvents runs.
        with db.transaction():
            rows = db.fetch(statements.RELAY_CLAIM, {"grace": grace, "limit": batch_size})
            claimed = [events.recorded(row) for row in rows]
            too_big = [e for e in claimed if e.entry_size(bus) > events.MAX_ENTRY_BYTES]
            if too_big:
                db.fetch(statements.DROP_UNPUBLISHABLE, {"ids": [e.event_id for e in too_big]})
                result.dropped += len(too_big)
                count("EventsDropped", len(too_big))
                logger.error("events too large for PutEvents dropped from the queue", extra={"event_ids": [e.event_id for e in too_big]})
            sendable = [e for e in claimed if e not in too_big]
            accepted, failed = events.put(sendable)
            if accepted:
                db.fetch(statements.MARK_PUBLISHED, {"ids": [e.event_id for e in accepted]})
        result.published += len(accepted)
        result.failed += len(failed)
        budget -= len(rows)
        if len(rows) < batch_size or failed:
            # Drained, or EventBridge is refusing: try again next sweep
            # rather than hammer it.
            break
    backlog = db.fetch(statements.OLDEST_PENDING_AGE)[0]
    result.oldest_pending_seconds, result.pending = float(backlog["age"]), int(backlog["pending"])
    metrics.add_metric(name="RelayPublished", unit="Count", value=result.published)
    metrics.add_metric(name="OldestPendingEventAgeSeconds", unit="Seconds", value=result.oldest_pending_seconds)
    metrics.add_metric(name="PendingEvents", unit="Count", value=result.pending)
    return result
