"""Request payloads: the seed's wire format (models.RegisterPayload,
HeartbeatPayload, UpdateCardPayload), validated strictly.

Strict types (a string is not a number) match what Go's JSON decoder
accepted; unknown fields are ignored as Go ignores them; JSON ``null`` in
an optional field means "not sent", as it did for the Go structs. Ranges
are the columns' ranges, so nothing valid here can overflow in Postgres.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# #615: spend is cents for the current month; the cap is an astronomical
# $10B so no legitimate workspace reaches it while NUMERIC overflow and
# budget comparisons stay safe.
MAX_MONTHLY_SPEND = 1_000_000_000_000

# Diagnostic text is cut, not refused: refusing a heartbeat because its
# stack trace is long would take a healthy workspace offline.
MAX_TEXT = 4096
MAX_RUNTIME_STATE = 64
MAX_CAPABILITIES = 64

# A workspace id, wherever it arrives (body, path, header, query, cursor).
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
UUID_EXAMPLE = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def _workspace_id(value: str) -> str:
    # Validated up front (the seed let Postgres reject a bad id: a 500) and
    # normalised, so Redis keys match the id Postgres prints.
    if not UUID.fullmatch(value):
        raise ValueError(f"must be a UUID such as {UUID_EXAMPLE}")
    return value.lower()


def _null_is_default(default: Any):
    return BeforeValidator(lambda v: default if v is None else v)


def _cut(limit: int):
    return AfterValidator(lambda v: v[:limit])


WorkspaceId = Annotated[str, Field(max_length=36), AfterValidator(_workspace_id)]
Text = Annotated[str, _null_is_default(""), _cut(MAX_TEXT)]


class _Payload(BaseModel):
    # defer_build: each function builds only the validators of the models it
    # uses, on first use, instead of all of them at import (cold start).
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)


class RegisterPayload(_Payload):
    id: WorkspaceId
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    agent_card: dict[str, Any]
    # One-time secret the platform gave the container (see 0004 migration);
    # only needed when the platform set one for this workspace.
    registration_secret: Annotated[str | None, Field(min_length=1, max_length=256)] = None


class RuntimeMetadata(_Payload):
    # Capability name -> "the adapter owns this natively" (adapter_base.py
    # RuntimeCapabilities.to_dict()).
    capabilities: Annotated[dict[Annotated[str, Field(max_length=64)], bool] | None, Field(max_length=MAX_CAPABILITIES)] = None
    # Positive: this workspace's A2A idle timeout; absent or <= 0: default.
    idle_timeout_seconds: Annotated[int | None, Field(ge=-INT32_MAX, le=INT32_MAX)] = None


class HeartbeatPayload(_Payload):
    workspace_id: WorkspaceId
    error_rate: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), _null_is_default(0.0)] = 0.0
    sample_error: Text = ""
    active_tasks: Annotated[int, Field(ge=0, le=INT32_MAX), _null_is_default(0)] = 0
    uptime_seconds: Annotated[int, Field(ge=0, le=INT32_MAX), _null_is_default(0)] = 0
    current_task: Text = ""
    # Any int64 is accepted and clamped (#615); beyond int64 the seed's
    # decoder refused the body, and so do we.
    monthly_spend: Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX), _null_is_default(0)] = 0
    runtime_state: Annotated[str, Field(max_length=MAX_RUNTIME_STATE), _null_is_default("")] = ""
    # None = an old runtime that did not say; see liveness.write_heartbeat.
    runtime_metadata: RuntimeMetadata | None = None

    def spend_to_store(self) -> int | None:
        """#615: zero or negative means "no update" (never overwrite a
        reported spend with 0); above the cap is clamped to the cap."""
        if self.monthly_spend <= 0:
            return None
        return min(self.monthly_spend, MAX_MONTHLY_SPEND)


class UpdateCardPayload(_Payload):
    workspace_id: WorkspaceId
    agent_card: dict[str, Any]


class DeregisterPayload(_Payload):
    workspace_id: WorkspaceId


class CheckAccessPayload(_Payload):
    # Both validated as UUIDs (the seed answered {"allowed": false} for
    # anything, which hid a typo behind a "no").
    caller_id: WorkspaceId
    target_id: WorkspaceId
