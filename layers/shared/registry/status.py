"""Status rules of a heartbeat (seed: evaluateStatus), as a pure function.

``next_transition(previous, signal)`` decides, from the status the row had
and what the heartbeat reports, whether the status changes and which event
announces it. It touches no server, so every rule is unit tested on its own.

The heartbeat statement needs the decision inside its single round trip,
before it knows the previous status; ``transition_table(signal)`` therefore
evaluates the rules for every status the row could have and the statement
picks the locked row's entry (registry/sql/heartbeat.sql).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("provisioning", "online", "offline", "degraded", "failed", "removed", "paused", "hibernated")

WEDGED = "wedged"
DEGRADE_AT_ERROR_RATE = 0.5
RECOVER_BELOW_ERROR_RATE = 0.1


@dataclass(frozen=True)
class Signal:
    """What a heartbeat says about the workspace's health."""

    error_rate: float = 0.0
    runtime_state: str = ""
    sample_error: str = ""


@dataclass(frozen=True)
class Transition:
    status: str
    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)


def next_transition(previous: str, signal: Signal) -> Transition | None:
    """The status change this heartbeat causes, or None.

    At most one transition per heartbeat, decided on the previous status
    (the seed read the status once and every branch tested that value).
    """
    if previous == "online":
        # Self-reported runtime wedge takes precedence over the error-rate
        # path: the heartbeat task keeps answering while the SDK is locked up
        # (claude_agent_sdk "Control request timeout: initialize"), so the
        # error rate stays 0 while every /a2a POST hangs. sample_error carries
        # the human-readable reason the canvas shows on the degraded card.
        if signal.runtime_state == WEDGED:
            return Transition(
                "degraded",
                "WORKSPACE_DEGRADED",
                {"runtime_state": WEDGED, "sample_error": signal.sample_error},
            )
        if signal.error_rate >= DEGRADE_AT_ERROR_RATE:
            return Transition(
                "degraded",
                "WORKSPACE_DEGRADED",
                {"error_rate": signal.error_rate, "sample_error": signal.sample_error},
            )
        return None
    if previous == "degraded":
        # Recovery needs BOTH a low error rate and no runtime state: a wedge
        # is sticky for the process lifetime, so only a restarted container
        # (fresh heartbeats, empty runtime_state, error_rate 0) recovers.
        if signal.error_rate < RECOVER_BELOW_ERROR_RATE and signal.runtime_state == "":
            return Transition("online", "WORKSPACE_ONLINE", {})
        return None
    if previous == "offline":
        # A workspace that is heartbeating again is back.
        return Transition("online", "WORKSPACE_ONLINE", {})
    if previous == "provisioning":
        # #1784: the provisioner never calls /registry/register on container
        # start, only the heartbeat loop runs, so this is the only way a new
        # workspace leaves the phantom-idle provisioning state.
        return Transition("online", "WORKSPACE_ONLINE", {"recovered_from": "provisioning"})
    # failed, paused and hibernated are owned by the platform; removed is a
    # tombstone (#73). A heartbeat changes none of them.
    return None


# A steady heartbeat keeps a workspace in one of these (the sweep writes its
# beats back for exactly these); the platform's own statuses (failed,
# paused, hibernated) and a removed workspace always go to Postgres.
STEADY_STATUSES = ("online", "degraded")


def quiet_statuses(signal: Signal) -> list[str]:
    """The statuses this signal leaves as they are, among those a steady
    heartbeat may keep: where the cached status is one of them, the
    heartbeat changes no status."""
    return [s for s in STEADY_STATUSES if next_transition(s, signal) is None]


def transition_table(signal: Signal) -> list[dict[str, Any]]:
    """next_transition for every possible previous status, as statement input."""
    table = []
    for previous in STATUSES:
        transition = next_transition(previous, signal)
        if transition is not None:
            table.append(
                {
                    "prev": previous,
                    "next": transition.status,
                    "event_type": transition.event_type,
                    "payload": transition.payload,
                }
            )
    return table
