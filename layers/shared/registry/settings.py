"""Configuration, read from the environment once per container.

DESIGN.md pins the names and defaults. Nothing here opens a connection:
clients are created lazily by the modules that own them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

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


def _text(name: str, default: str | None) -> str | None:
    return os.environ.get(name) or default


def _seconds_int(minimum: int):
    return lambda name, default: _int(name, default, minimum=minimum)


def _percent(name: str, default: float) -> float:
    return float(_int(name, int(default), minimum=0))


DEFAULT_INTERNAL_URL_TEMPLATE = "http://ws-{id12}:8000"


def _internal_url_template(name: str, default: str) -> str:
    """Unset is the default, empty is kept (use the registered URL). One
    with any other {placeholder} is refused with a warning and the default
    used: a typo must not break every discovery."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    filled = fill_internal_url(raw, "x")
    if "{" in filled or "}" in filled:
        log.warning("settings: %s=%r has a placeholder other than {id} and {id12}; using %r", name, raw, default)
        return default
    return raw


def fill_internal_url(template: str, workspace_id: str) -> str:
    """The template with {id12} and {id} replaced (plain text replacement,
    not str.format: nothing else in it is interpreted)."""
    return template.replace("{id12}", workspace_id[:12]).replace("{id}", workspace_id)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its Settings field (None: another module
    reads it, as its meaning says), its default, how it is read, and what it
    means. docs/configuration.md is generated from this table."""

    name: str
    field: str | None
    default: Any
    meaning: str
    read: Callable[[str, Any], Any] = _text

    def value(self) -> Any:
        return self.read(self.name, self.default)


# Every variable the layer reads, in one place: tests/test_docs.py checks
# that the code reads no other.
VARIABLES: tuple[Variable, ...] = (
    Variable("DATABASE_URL", "database_url", None, "Postgres URI (libpq form). In AWS unset: the DSN is built from `DATABASE_SECRET_ARN`."),
    Variable("DATABASE_SECRET_ARN", None, None, "In AWS: the Secrets Manager secret with the database credentials (`registry/dbsecret.py`)."),
    Variable("DATABASE_HOST", None, None, "With the secret: the RDS Proxy endpoint, replacing the secret's host."),
    Variable("DATABASE_NAME", None, None, "With the secret: the database name, replacing the secret's `dbname`."),
    Variable("REDIS_URL", "redis_url", None, "`redis://`, `rediss://` (TLS, ElastiCache) or `unix://`. Unset: Redis is skipped (every heartbeat goes to Postgres)."),
    Variable("EVENT_BUS_NAME", "event_bus_name", "workspace-registry", "The EventBridge bus events go to."),
    Variable("LIVENESS_TTL_SECONDS", "liveness_ttl_seconds", 180, "Silent this long = offline; the TTL of `ws:{id}`.", _int),
    Variable("MOLECULE_DEPLOY_MODE", None, None, "`saas` relaxes the URL guard for RFC 1918 and `fd00::/8`; `self-hosted`, `selfhosted`, `standalone` or anything else: strict (the seed's `saasMode()`)."),
    Variable("MOLECULE_ORG_ID", None, None, "When `MOLECULE_DEPLOY_MODE` is unset, its presence means SaaS mode."),
    Variable("PUBLISH_HEARTBEAT_EVENTS", "publish_heartbeat_events", False, "Publish `WORKSPACE_HEARTBEAT` on every heartbeat (a paid PutEvents entry each; nothing durable needs them).", _bool),
    Variable("MAX_BODY_BYTES", "max_body_bytes", 64 * 1024, "Request body limit (413 above).", _int),
    Variable("REDIS_COOLDOWN_SECONDS", "redis_cooldown_seconds", 2, "After a Redis failure, skip Redis this long: a dead cache costs one short time-out per container every few seconds.", lambda n, d: float(_int(n, d, minimum=0))),
    Variable("PG_CONNECT_TIMEOUT_SECONDS", "pg_connect_timeout_seconds", 2, "Postgres connect time-out.", _int),
    Variable("PG_SOCKET_TIMEOUT_MS", "pg_socket_timeout_ms", 6000, "How long the client waits on a silent server (`tcp_user_timeout`). The server-side statement (5 s), lock (3 s) and idle-in-transaction (60 s) time-outs are role defaults (migration 0007): RDS Proxy refuses libpq `options` and pins sessions that run `SET`.", _int),
    Variable("RETRY_AFTER_SECONDS", "retry_after_seconds", 5, "`Retry-After` of a 503.", _int),
    Variable("REQUIRE_WORKSPACE_TOKENS", "require_workspace_tokens", False, "The seed's step 30.5: every call needs a token, even for workspaces that never had one (no grandfathering). Register still mints the first.", _bool),
    Variable("REQUIRE_REGISTRATION_SECRET", "require_registration_secret", False, "Every first registration needs the workspace's one-time registration secret.", _bool),
    Variable("TOKEN_RECOVERY_SECONDS", "token_recovery_seconds", 600, "How long a minted, never used token can be replaced by repeating the first registration (a lost first answer); 0 = never.", _seconds_int(0)),
    Variable("SELF_PRESERVATION_THRESHOLD_PERCENT", "self_preservation_threshold_percent", 15.0, "Self-preservation: more than this share of the fleet silent (and at least `SELF_PRESERVATION_MIN_SILENT`) and the sweep expires nobody.", _percent),
    Variable("SELF_PRESERVATION_MIN_SILENT", "self_preservation_min_silent", 5, "Self-preservation needs at least this many silent workspaces (small fleets expire normally).", _int),
    Variable("SELF_PRESERVATION_MAX_SECONDS", "self_preservation_max_seconds", 900, "After this long in self-preservation the silence is real: expiry resumes.", _seconds_int(0)),
    Variable("SWEEP_MAX_EXPIRE", "sweep_max_expire", 500, "Workspaces one sweep may expire, oldest heartbeat first.", _int),
    Variable("AUTH_CACHE_SECONDS", "auth_cache_seconds", 60, "The steady heartbeat trusts what Redis knows of a workspace this long after Postgres wrote or the sweep re-armed it; 0 = every heartbeat goes to Postgres.", _seconds_int(0)),
    Variable("SWEEP_INTERVAL_SECONDS", "sweep_interval_seconds", 60, "How often the sweep runs (the template's schedule). The steady path is on only while `LIVENESS_TTL_SECONDS` > this + `HEARTBEAT_INTERVAL_SECONDS`.", _int),
    Variable("HEARTBEAT_INTERVAL_SECONDS", "heartbeat_interval_seconds", 30, "How often agents heartbeat (the seed runtime's 30 s), for the same check.", _int),
    Variable("EVENT_RELAY_GRACE_SECONDS", "event_relay_grace_seconds", 60, "The relay leaves pending events younger than this to the request that is publishing them.", _seconds_int(0)),
    Variable("EVENT_RELAY_MAX_EVENTS", "event_relay_max_events", 1000, "Events the relay publishes per sweep at most.", _int),
    Variable("INTERNAL_URL_TEMPLATE", "internal_url_template", DEFAULT_INTERNAL_URL_TEMPLATE, "Discovery: the URL of an online peer with no cached internal URL; `{id}` and `{id12}` (its first 12 characters) are replaced. Empty: the URL it registered.", _internal_url_template),
    Variable("DISCOVER_CACHE_SECONDS", "discover_cache_seconds", 30, "Discovery: how long an answer is kept in Redis for the same caller, target and token; 0 = off.", _seconds_int(0)),
    Variable("DISCOVERY_MAX_AGE_SECONDS", "discovery_max_age_seconds", 0, "`Cache-Control: private, max-age=` of discover and peers answers (0: clients revalidate with `If-None-Match`).", _seconds_int(0)),
    Variable("ADMIN_AUTH", "admin_auth", "none", "The `/admin/` routes: `iam` (the template's value) refuses a request API Gateway did not authorize with IAM; `none` (local runs) accepts any.", lambda n, d: (os.environ.get(n) or d).strip().lower()),
    Variable("ADMIN_API_URL", None, None, "The fleet view's command line (`python -m registry.admin`): the API it reads, when `--url` is not given; unset, `make run`'s."),
    Variable("PORT", None, "3000", "The fleet view's command line: the port of the local `make run` it reads when neither `--url` nor `ADMIN_API_URL` is given."),
    Variable("NO_COLOR", None, None, "The fleet view's command line: set, its tables are never coloured."),
    Variable("POWERTOOLS_SERVICE_NAME", None, "workspace-registry", "Powertools: the service name in logs and metrics (`registry/observability.py`)."),
    Variable("POWERTOOLS_METRICS_NAMESPACE", None, "WorkspaceRegistry", "Powertools: the CloudWatch metrics namespace."),
    Variable("POWERTOOLS_TRACE_DISABLED", None, None, "Powertools: `true` turns X-Ray tracing off even where a daemon is configured."),
    Variable("AWS_XRAY_DAEMON_ADDRESS", None, None, "Set by Lambda for functions with active tracing: the Tracer is built only then (it costs a cold start otherwise)."),
)


@dataclass(frozen=True)
class Settings:
    """Read once per container (get_settings); one attribute per Variable
    with a field. Meanings: VARIABLES."""

    database_url: str | None
    redis_url: str | None
    event_bus_name: str
    liveness_ttl_seconds: int
    publish_heartbeat_events: bool
    max_body_bytes: int
    redis_cooldown_seconds: float
    pg_connect_timeout_seconds: int
    pg_socket_timeout_ms: int
    retry_after_seconds: int
    require_workspace_tokens: bool
    require_registration_secret: bool
    token_recovery_seconds: int
    self_preservation_threshold_percent: float
    self_preservation_min_silent: int
    self_preservation_max_seconds: int
    sweep_max_expire: int
    auth_cache_seconds: int
    sweep_interval_seconds: int
    heartbeat_interval_seconds: int
    event_relay_grace_seconds: int
    event_relay_max_events: int
    internal_url_template: str
    discover_cache_seconds: int
    discovery_max_age_seconds: int
    admin_auth: str


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(**{v.field: v.value() for v in VARIABLES if v.field})


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
