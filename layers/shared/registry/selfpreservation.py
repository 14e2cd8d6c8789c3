"""How many silent workspaces one sweep may expire: a pure function.

Eureka's lesson: when the registry or the network is the problem, every
healthy agent looks silent at once, and expiring them all takes the whole
fleet offline. So when the silent share of the fleet (online + degraded)
exceeds a threshold the sweep stops expiring and says so, once when it
enters that state and once when it leaves.

Rules:
- Self-preservation engages when more than ``threshold_percent`` of the
  fleet is silent AND at least ``min_silent`` workspaces are. The second
  condition keeps small fleets working normally (the known complaint about
  Eureka): in a fleet of 5, one silent workspace is 20 %, and it is just a
  dead workspace.
- It lasts at most ``max_seconds``: an outage that long is real, not a
  blip, and expiry resumes (still capped per sweep).
- Every sweep expires at most ``max_expire`` workspaces, oldest heartbeat
  first, so even a legitimate mass expiry is spread over a few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    threshold_percent: float = 15.0
    min_silent: int = 5
    max_seconds: int = 900
    max_expire: int = 500


NORMAL = "normal"
ACTIVE = "active"  # not expiring
EXHAUSTED = "exhausted"  # mass silence outlasted max_seconds: expiring again


@dataclass(frozen=True)
class Decision:
    expire: int  # how many of the silent to expire now (oldest first)
    state: str  # the state after this sweep
    entered: bool = False  # announce REGISTRY_SELF_PRESERVATION entered
    left: bool = False  # announce REGISTRY_SELF_PRESERVATION left


def decide(fleet: int, silent: int, state: str, active_for: float, policy: Policy) -> Decision:
    """``active_for``: seconds since self-preservation was entered (0 if not)."""
    capped = min(silent, policy.max_expire)
    mass_silence = silent >= policy.min_silent and silent * 100 > policy.threshold_percent * fleet
    if not mass_silence:
        return Decision(capped, NORMAL, left=(state == ACTIVE))
    if state == NORMAL:
        return Decision(0, ACTIVE, entered=True)
    if state == ACTIVE and active_for < policy.max_seconds:
        return Decision(0, ACTIVE)
    # Active too long (or already exhausted): the silence is real. Expire,
    # capped, and stay out of self-preservation until the silence ends, so
    # the sweep does not flap in and out every minute.
    return Decision(capped, EXHAUSTED, left=(state == ACTIVE))
