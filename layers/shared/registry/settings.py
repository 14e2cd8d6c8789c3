"""Configuration, read from the environment once per container.

DESIGN.md pins the names and defaults. Nothing here opens a connection:
clients are created lazily by the modules that own them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def _bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return default if raw == "" else raw in _TRUE


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("settings: %s=%r is not an integer; using %d", name, raw, default)
        return default
    return max(value, minimum)


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    redis_url: str | None
    event_bus_name: str
    liveness_ttl_seconds: int
    # Per-heartbeat WORKSPACE_HEARTBEAT events cost one PutEvents entry each
    # and nothing durable needs them; the last heartbeat time is in Redis.
    publish_heartbeat_events: bool
    max_body_bytes: int
    # Seconds a dependency is skipped after it failed, so a dead Redis costs
    # one short time-out per container every few seconds, not one per call.
    redis_cooldown_seconds: float
    pg_connect_timeout_seconds: int
    # How long the client waits on a server that stopped answering (TCP);
    # longer than the role's 5 s statement time-out (migration 0007).
    pg_socket_timeout_ms: int
    retry_after_seconds: int
    # Phase 30.5 of the seed's plan: every heartbeat / update-card /
    # deregister needs a token, even for workspaces that never had one.
    require_workspace_tokens: bool
    # Every first registration needs the workspace's registration secret.
    require_registration_secret: bool
    # How long a minted token that was never used can be replaced by
    # repeating the first registration (a lost first answer, sql/register.sql);
    # 0 turns the recovery off.
    token_recovery_seconds: int
    # Liveness sweep (selfpreservation.py explains the rules).
    self_preservation_threshold_percent: float
    self_preservation_min_silent: int
    self_preservation_max_seconds: int
    sweep_max_expire: int
    # The steady heartbeat (liveness.steady_beat) trusts what Redis knows of a
    # workspace for this long after a Postgres call wrote it; 0 = every
    # heartbeat goes to Postgres.
    auth_cache_seconds: int
    # How often the sweep runs (the template's schedule) and how often agents
    # heartbeat (the seed runtime's 30 s): the steady path is safe only while
    # LIVENESS_TTL_SECONDS > SWEEP_INTERVAL_SECONDS + HEARTBEAT_INTERVAL_SECONDS
    # (steady_path_enabled explains why).
    sweep_interval_seconds: int
    heartbeat_interval_seconds: int
    # The relay leaves events younger than this to the request that is
    # publishing and marking them itself.
    event_relay_grace_seconds: int
    event_relay_max_events: int
    # The /admin/ read routes: "iam" (the template's value) refuses an event
    # that API Gateway did not authorize with IAM, in case a route ever
    # loses its AWS_IAM setting; "none" (local runs, tests) accepts any.
    admin_auth: str


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        event_bus_name=os.environ.get("EVENT_BUS_NAME") or "workspace-registry",
        liveness_ttl_seconds=_int("LIVENESS_TTL_SECONDS", 180),
        publish_heartbeat_events=_bool("PUBLISH_HEARTBEAT_EVENTS"),
        max_body_bytes=_int("MAX_BODY_BYTES", 64 * 1024),
        redis_cooldown_seconds=float(_int("REDIS_COOLDOWN_SECONDS", 2, minimum=0)),
        pg_connect_timeout_seconds=_int("PG_CONNECT_TIMEOUT_SECONDS", 2),
        pg_socket_timeout_ms=_int("PG_SOCKET_TIMEOUT_MS", 6000),
        retry_after_seconds=_int("RETRY_AFTER_SECONDS", 5),
        require_workspace_tokens=_bool("REQUIRE_WORKSPACE_TOKENS"),
        require_registration_secret=_bool("REQUIRE_REGISTRATION_SECRET"),
        token_recovery_seconds=_int("TOKEN_RECOVERY_SECONDS", 600, minimum=0),
        self_preservation_threshold_percent=float(_int("SELF_PRESERVATION_THRESHOLD_PERCENT", 15, minimum=0)),
        self_preservation_min_silent=_int("SELF_PRESERVATION_MIN_SILENT", 5),
        self_preservation_max_seconds=_int("SELF_PRESERVATION_MAX_SECONDS", 900, minimum=0),
        sweep_max_expire=_int("SWEEP_MAX_EXPIRE", 500),
        auth_cache_seconds=_int("AUTH_CACHE_SECONDS", 60, minimum=0),
        sweep_interval_seconds=_int("SWEEP_INTERVAL_SECONDS", 60),
        heartbeat_interval_seconds=_int("HEARTBEAT_INTERVAL_SECONDS", 30),
        event_relay_grace_seconds=_int("EVENT_RELAY_GRACE_SECONDS", 60, minimum=0),
        event_relay_max_events=_int("EVENT_RELAY_MAX_EVENTS", 1000),
        admin_auth=(os.environ.get("ADMIN_AUTH") or "none").strip().lower(),
    )


def steady_path_enabled() -> bool:
    """Whether heartbeats that change nothing may be answered from Redis.

    A steady beat lives only in Redis until the sweep writes it to Postgres,
    and the sweep decides liveness on Postgres. If Redis loses its data
    (failover, flush) just before a sweep's write, Postgres holds the beat
    that sweep's predecessor wrote, at most one sweep interval plus one
    heartbeat interval old, and the workspace's next heartbeat, finding
    nothing cached, goes to Postgres. So a workspace that kept heartbeating
    is never expired as long as

        LIVENESS_TTL_SECONDS > SWEEP_INTERVAL_SECONDS + HEARTBEAT_INTERVAL_SECONDS

    (180 > 60 + 30 by default). When it does not hold, the steady path is
    off and every heartbeat goes to Postgres, with one error logged.
    """
    global _warned_inequality
    s = get_settings()
    if s.auth_cache_seconds <= 0:
        return False
    if s.liveness_ttl_seconds > s.sweep_interval_seconds + s.heartbeat_interval_seconds:
        return True
    if not _warned_inequality:
        _warned_inequality = True
        log.error(
            "steady heartbeat path off: LIVENESS_TTL_SECONDS (%d) must exceed SWEEP_INTERVAL_SECONDS (%d) + HEARTBEAT_INTERVAL_SECONDS (%d)",
            s.liveness_ttl_seconds,
            s.sweep_interval_seconds,
            s.heartbeat_interval_seconds,
        )
    return False


_warned_inequality = False


# saas_mode() mirrors the seed's saasMode(): MOLECULE_DEPLOY_MODE is
# authoritative when set; an unknown value falls closed (strict) with one
# warning so a typo such as MOLECULE_DEPLOY_MODE=prod cannot relax the SSRF
# guard; when unset, the presence of MOLECULE_ORG_ID means SaaS (deployments
# that predate the explicit flag).
_SAAS = {"saas"}
_NOT_SAAS = {"self-hosted", "selfhosted", "standalone"}
_warned_unknown_mode = False


def saas_mode() -> bool:
    global _warned_unknown_mode
    raw = os.environ.get("MOLECULE_DEPLOY_MODE", "")
    mode = raw.strip().lower()
    if mode:
        if mode in _SAAS:
            return True
        if mode not in _NOT_SAAS and not _warned_unknown_mode:
            _warned_unknown_mode = True
            log.warning(
                "saasMode: MOLECULE_DEPLOY_MODE=%r not recognised; falling back to strict "
                "(non-SaaS) mode. Valid values: saas | self-hosted.",
                raw,
            )
        return False
    return os.environ.get("MOLECULE_ORG_ID", "").strip() != ""
