"""The operators' fleet view: what the GET /admin/... routes answer.

- ``workspaces``: a page of the list, newest registration first, filtered
  by status, a text search (words of the name, role and card name, as
  prefixes), a skill id or tag of the agent card, and changed-since; a
  cursor resumes after the page's last row.
- ``workspace``: one workspace's record, what Redis holds for it and its
  latest events.
- ``events``: the change feed (structure_events) after a cursor, in an
  order in which nothing can appear behind a cursor once it was handed out
  (migration 0010), so a follower that stores its cursor never misses and
  never repeats an event.
- ``summary``: counts by status, self-preservation, the event backlog and
  the head of the feed.

Each is one Postgres statement (statements.ADMIN_*); the detail adds one
Redis pipeline. Every answer is bounded: pages by ``limit`` and, for
events, by payload bytes; counts exactly up to a cap, estimated beyond.
Token hashes and registration secrets are never read.

In AWS the routes use IAM authorization at API Gateway; ``require_operator``
also refuses, when ADMIN_AUTH=iam, an event that API Gateway did not sign
off with IAM (a route whose authorization was lost in a template change),
and logs who read what.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from registry import db, liveness, query, statements
from registry.api import ApiError, workspace_id as parse_workspace_id
from registry.models import UUID
from registry.observability import count, logger
from registry.settings import get_settings

# The workspace_status enum (migration 0001), in its order.
STATUSES = ("provisioning", "online", "offline", "degraded", "failed", "removed", "paused", "hibernated")
# Removed workspaces are tombstones: listed only when asked for by status.
LISTED_BY_DEFAULT = tuple(s for s in STATUSES if s != "removed")

WORKSPACES_PARAMS = ("status", "q", "skill", "tag", "updated_since", "limit", "cursor")
EVENTS_PARAMS = ("after", "tail", "workspace_id", "type", "limit")

LIST_LIMIT, LIST_LIMIT_MAX = 50, 200
EVENTS_LIMIT, EVENTS_LIMIT_MAX = 100, 500
# Payload bytes in one page of events (or of a workspace's recent events);
# the JSON around them stays well below Lambda's 6 MB answer limit.
PAGE_BYTES = 1_000_000
RECENT_EVENTS = 20
# A card larger than this (only the platform can store one) is not sent.
MAX_CARD_BYTES = 1_000_000
# Counts are exact up to this many rows, estimated above (bounded cost).
EXACT_COUNT = 10_000
MAX_SEARCH_CHARS = 200
# How far each status is walked in order before a filtered page asks the
# filters' indexes instead (statements.ADMIN_WORKSPACES): at most
# statuses x this rows.
SCAN_PER_STATUS = 1000

_DURATION = re.compile(r"(\d{1,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_BAD_CURSOR = "cursor is not one this API issued; start again without it"


# --------------------------------------------------------------- access


def require_operator(event: dict, route: str) -> None:
    """Refuse (403) what IAM did not authorize when ADMIN_AUTH=iam; log the
    caller either way (an audit line per admin read)."""
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    iam = (context.get("authorizer") or {}).get("iam") or {}  # HTTP API (payload 2.0)
    caller = identity.get("userArn") or iam.get("userArn") or identity.get("caller") or iam.get("callerId")
    if get_settings().admin_auth == "iam" and not (caller or identity.get("accessKey") or iam.get("accessKey")):
        count("AdminUnauthorized")
        logger.warning("admin route reached without IAM authorization; check the route's authorizer", extra={"route": route})
        raise ApiError(403, "IAM authorization required")
    count("AdminReads")
    logger.info("admin read", extra={"route": route, "caller": caller or "local"})


# --------------------------------------------------------------- cursors


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, _BAD_CURSOR) from None


def _stamp(when: datetime) -> str:
    """Exact to the microsecond, as Postgres stores it."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_stamp(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, _BAD_CURSOR) from None
    if when.tzinfo is None:
        raise ApiError(400, _BAD_CURSOR)
    return when


def _fields(token: str, kind: str, count: int) -> list[str]:
    """The fields of a cursor of this kind ("w1." or "e1."), 400 otherwise."""
    if not token.startswith(kind):
        raise ApiError(400, _BAD_CURSOR)
    fields = _unb64(token[len(kind):]).split("|")
    if len(fields) != count:
        raise ApiError(400, _BAD_CURSOR)
    return fields


def _parse_uuid(text: str) -> str:
    if not UUID.fullmatch(text):
        raise ApiError(400, _BAD_CURSOR)
    return text.lower()


@dataclass(frozen=True)
class ListPosition:
    """After this row of the list (created_at, id), newest first."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        return "w1." + _b64(f"{_stamp(self.created_at)}|{self.id}")

    @classmethod
    def decode(cls, token: str) -> ListPosition:
        created_at, id_ = _fields(token, "w1.", 2)
        return cls(_parse_stamp(created_at), _parse_uuid(id_))


@dataclass(frozen=True)
class FeedPosition:
    """After this event of the feed (feed_xid, created_at, id)."""

    xid: int
    created_at: datetime
    id: str

    def encode(self) -> str:
        return "e1." + _b64(f"{self.xid}|{_stamp(self.created_at)}|{self.id}")

    @classmethod
    def decode(cls, token: str) -> FeedPosition:
        xid, created_at, id_ = _fields(token, "e1.", 3)
        if not (xid.isascii() and xid.isdigit()) or int(xid) >= 2**64:
            raise ApiError(400, _BAD_CURSOR)
        return cls(int(xid), _parse_stamp(created_at), _parse_uuid(id_))


# Before every event: xid 0 is the platform's history (migration 0010).
FEED_START = FeedPosition(0, datetime(1, 1, 1, tzinfo=UTC), "00000000-0000-0000-0000-000000000000")


# --------------------------------------------------------------- rows


@dataclass(frozen=True)
class Listed:
    id: str
    name: str | None
    role: str | None
    tier: int | None
    status: str | None
    url: str | None
    parent_id: str | None
    card_name: str | None
    card_version: str | None
    skills: list[str]
    last_heartbeat_at: datetime | None
    last_error_rate: float | None
    last_sample_error: str | None
    active_tasks: int | None
    max_concurrent_tasks: int | None
    current_task: str | None
    uptime_seconds: int | None
    monthly_spend: int | None
    budget_limit: int | None
    revision: int | None
    created_at: datetime
    updated_at: datetime | None
    changed_at: datetime


@dataclass(frozen=True)
class Detail:
    id: str
    name: str | None
    role: str | None
    tier: int | None
    status: str | None
    url: str | None
    parent_id: str | None
    forwarded_to: str | None
    agent_card: Any
    agent_card_bytes: int | None
    last_heartbeat_at: datetime | None
    last_error_rate: float | None
    last_sample_error: str | None
    active_tasks: int | None
    max_concurrent_tasks: int | None
    current_task: str | None
    uptime_seconds: int | None
    monthly_spend: int | None
    budget_limit: int | None
    revision: int | None
    created_at: datetime | None
    updated_at: datetime | None
    registration_secret_set: bool
    live_tokens: list
    recent_events: list


@dataclass(frozen=True)
class FeedEvent:
    event_id: str
    event_type: str
    workspace_id: str | None
    sequence: int | None
    created_at: datetime
    payload: Any
    pending: bool
    published_at: datetime | None
    feed_xid: str
    fetched: int


@dataclass(frozen=True)
class Summary:
    counts: dict
    estimates: dict | None
    self_preservation: str
    self_preservation_since: datetime | None
    last_sweep_at: datetime | None
    pending: int
    oldest_pending_at: datetime | None
    head_xid: str | None
    head_created_at: datetime | None
    head_id: str | None
    now: datetime


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(row: Any) -> dict[str, Any]:
    out = {}
    for name, value in asdict(row).items():
        out[name] = iso(value) if isinstance(value, datetime) else value
    return out


# --------------------------------------------------------------- routes


def _statuses(raw: str | None) -> list[str]:
    if raw is None:
        return list(LISTED_BY_DEFAULT)
    asked = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [s for s in asked if s not in STATUSES]
    if unknown or not asked:
        raise ApiError(400, f"status: {unknown[0] if unknown else raw!r} is not one of {', '.join(STATUSES)}")
    return list(dict.fromkeys(asked))


def parse_since(raw: str | None, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or a duration back
    from now: 90s, 15m, 2h, 7d."""
    if raw is None:
        return None
    text = raw.strip()
    duration = _DURATION.fullmatch(text)
    if duration:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ApiError(400, "updated_since: an ISO 8601 time such as 2024-06-11T10:00:00Z, or a duration such as 15m, 2h or 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _search(found: dict[str, str], name: str) -> str | None:
    value = query.text(found, name, MAX_SEARCH_CHARS)
    if value is not None and not value.strip():
        return None
    return value


def workspaces(event: dict) -> dict[str, Any]:
    found = query.params(event, WORKSPACES_PARAMS)
    limit = query.integer(found, "limit", LIST_LIMIT, 1, LIST_LIMIT_MAX)
    cursor = query.given(found, "cursor")
    after = ListPosition.decode(cursor) if cursor else None
    q = _search(found, "q")
    if q is not None and not any(ch.isalnum() for ch in q):
        raise ApiError(400, "q: needs at least one letter or digit (words are matched as prefixes)")
    skill, tag = _search(found, "skill"), _search(found, "tag")
    searching = q is not None or skill is not None or tag is not None
    since = parse_since(query.given(found, "updated_since"))
    rows = db.fetch(
        statements.ADMIN_WORKSPACES,
        {
            "statuses": _statuses(query.given(found, "status")),
            "after_created_at": after.created_at if after else None,
            "after_id": after.id if after else None,
            "updated_since": since,
            "q": q,
            "skill": skill,
            "tag": tag,
            "searching": searching,
            "limit": limit + 1,
            # With a filter to test, each status is walked this far before
            # the filters' indexes are asked instead (statements.ADMIN_WORKSPACES).
            "scan": max(limit + 1, SCAN_PER_STATUS) if searching or since is not None else limit + 1,
        },
    )
    listed = [statements.read(Listed, row) for row in rows]
    more = len(listed) > limit
    listed = listed[:limit]
    next_cursor = ListPosition(listed[-1].created_at, listed[-1].id).encode() if more else None
    return {"workspaces": [_jsonable(row) for row in listed], "next_cursor": next_cursor}


def workspace(workspace_id: str) -> dict[str, Any]:
    workspace_id = parse_workspace_id(workspace_id, "workspace id")
    rows = db.fetch(
        statements.ADMIN_WORKSPACE,
        {"id": workspace_id, "max_card_bytes": MAX_CARD_BYTES, "events": RECENT_EVENTS, "page_bytes": PAGE_BYTES},
    )
    if not rows:
        raise ApiError(404, "no such workspace")
    record = _jsonable(statements.read(Detail, rows[0]))
    recent = record.pop("recent_events")
    held = liveness.read(workspace_id)
    return {
        "workspace": record,
        "redis": {"available": True, **held} if held is not None else {"available": False},
        "recent_events": recent,
    }


def events(event: dict) -> dict[str, Any]:
    """After a cursor (default: the start), or the last ``tail`` events;
    either way oldest first, with the cursor to follow from."""
    found = query.params(event, EVENTS_PARAMS)
    given_after = query.given(found, "after")
    tail = query.integer(found, "tail", 0, 1, EVENTS_LIMIT_MAX) if "tail" in found else None
    if tail is not None and given_after:
        raise ApiError(400, "after and tail: give one of them")
    limit = query.integer(found, "limit", EVENTS_LIMIT, 1, EVENTS_LIMIT_MAX)  # checked even beside tail
    limit = tail or limit
    after = FeedPosition.decode(given_after) if given_after else FEED_START
    workspace_id = query.given(found, "workspace_id")
    if workspace_id is not None:
        workspace_id = parse_workspace_id(workspace_id, "workspace_id:")
    rows = db.fetch(
        statements.ADMIN_EVENTS_TAIL if tail else statements.ADMIN_EVENTS,
        {
            "after_xid": str(after.xid),
            "after_created_at": after.created_at,
            "after_id": after.id,
            "workspace_id": workspace_id,
            "event_type": query.text(found, "type", 128),
            "limit": limit if tail else limit + 1,
            "page_bytes": PAGE_BYTES,
        },
    )
    feed = [statements.read(FeedEvent, row) for row in rows]
    fetched = feed[0].fetched if feed else 0
    # The tail ends at the newest event: nothing more to read now. (No
    # matching event yet: following from the start misses nothing, there
    # is nothing of this filter before now.)
    more = not tail and (len(feed) > limit or len(feed) < fetched)
    feed = feed[:limit]
    out = []
    for e in feed:
        position = FeedPosition(int(e.feed_xid), e.created_at, e.event_id)
        out.append(
            {
                "cursor": position.encode(),
                "event_id": e.event_id,
                "event_type": e.event_type,
                "workspace_id": e.workspace_id,
                "sequence": e.sequence,
                "occurred_at": iso(e.created_at),
                "payload": e.payload,
                "pending": e.pending,
                "published_at": iso(e.published_at),
            }
        )
    next_cursor = out[-1]["cursor"] if out else after.encode()
    return {"events": out, "next_cursor": next_cursor, "has_more": more}


def summary() -> dict[str, Any]:
    row = statements.read(Summary, db.fetch(statements.ADMIN_SUMMARY, {"exact": EXACT_COUNT})[0])
    estimates = row.estimates or {}
    counts = {}
    for status in STATUSES:
        exact = int(row.counts.get(status, 0))
        if exact < EXACT_COUNT:
            counts[status] = {"count": exact, "estimated": False}
        else:
            counts[status] = {"count": max(exact, int(estimates.get(status) or 0)), "estimated": True}
    if row.head_xid is None:
        head = FEED_START
    else:
        head = FeedPosition(int(row.head_xid), row.head_created_at, row.head_id)
    oldest = max(0.0, (row.now - row.oldest_pending_at).total_seconds()) if row.oldest_pending_at else None
    return {
        "workspaces": counts,
        "fleet": counts["online"]["count"] + counts["degraded"]["count"],
        "self_preservation": {"state": row.self_preservation, "since": iso(row.self_preservation_since), "last_sweep_at": iso(row.last_sweep_at)},
        "events": {
            "pending": row.pending,
            "pending_at_least": row.pending >= EXACT_COUNT,
            "oldest_pending_age_seconds": round(oldest, 3) if oldest is not None else None,
            "cursor": head.encode(),
        },
        "liveness_ttl_seconds": get_settings().liveness_ttl_seconds,
        "generated_at": iso(row.now),
    }
