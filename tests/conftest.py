"""Test fixtures: real Postgres and Redis (embedded, or DATABASE_URL /
REDIS_URL when set), EventBridge through moto with a rule that copies
every registry event to an SQS queue, so tests assert on what was really
published. No mocks of the database or Redis."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "layers" / "shared"))
sys.path.insert(0, str(REPO))

from devstack import harness  # noqa: E402 - needs the checkout on sys.path

# pytest keeps its temporary folders under one root per user and prunes the
# older ones when a session starts; the embedded Postgres lives there. Two
# checkouts tested at once (a worktree, a second clone) would prune each
# other's running servers, so each checkout gets a root of its own.
os.environ.setdefault(
    "PYTEST_DEBUG_TEMPROOT", str(Path(tempfile.gettempdir()) / f"registry-tests-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}")
)
Path(os.environ["PYTEST_DEBUG_TEMPROOT"]).mkdir(parents=True, exist_ok=True)

# Before anything imports boto3 or the layer: fake AWS credentials, so no
# test can reach a real account, the strict URL guard (no SaaS mode from
# the shell), and quiet Powertools output.
harness.use_aws_env()
os.environ.update({"POWERTOOLS_METRICS_NAMESPACE": "WorkspaceRegistryTests", "POWERTOOLS_LOG_LEVEL": "INFO"})
os.environ.pop("MOLECULE_DEPLOY_MODE", None)
os.environ.pop("MOLECULE_ORG_ID", None)


@dataclass
class Servers:
    """The session's servers. ``database_url`` reaches Postgres directly (for
    setup and assertions); the functions' own connection code reaches it
    through ``proxy``, the RDS Proxy stand-in (``DATABASE_URL`` is
    ``proxy.dsn()``), as it does in AWS."""

    database_url: str
    redis_url: str
    proxy: object  # devstack.rdsproxy.ProxyStandIn


# The session's stand-in, for the summary line at the end of the run.
_session_proxy = None


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    global _session_proxy
    from devstack.rdsproxy import ProxyStandIn

    started = harness.start_servers(tmp_path_factory.mktemp("state"), migrate=False)
    try:
        proxy = ProxyStandIn(started.database_url).start()
        started.on_stop(proxy.stop)
        from registry import migrate

        migrate.apply(proxy.dsn())  # the schema goes in through the proxy too
    except BaseException:
        started.stop()
        raise
    _session_proxy = proxy
    os.environ["DATABASE_URL"] = proxy.dsn()
    os.environ["REDIS_URL"] = started.redis_url
    from registry import settings

    settings.get_settings.cache_clear()
    yield Servers(started.database_url, started.redis_url, proxy)
    from registry import db, liveness

    db.close()
    liveness.reset()
    started.stop()
    unexpected = unexpected_pins(proxy)
    assert not unexpected, "statements the registry sent through the RDS Proxy stand-in would pin the session:\n" + "\n".join(
        f"  [{p.application_name}] {p.reasons}: {p.statement[:300]}" for p in unexpected
    )


def unexpected_pins(proxy) -> list:
    """Pins the functions' connections must not produce (docs/deploy.md, "RDS Proxy: what the registry relies on").

    Known and accepted, so not listed here:
    - the migration runner's ``SET LOCAL`` (its one short session ends with
      the run, and the pin with it);
    - a request function's call over 16 KB, which only a large agent card
      or maximal multi-byte heartbeat text makes (psycopg2 sends parameters
      inline): the proxy pins that session, and registry.db closes the
      connection right after, which ends it (tests/test_rds_proxy.py checks
      that it does);
    - everything on the connection of a ``-- migrate: no transaction`` file
      (registry/migrate.py): its session time-outs and advisory lock are
      what such a file needs, on a connection of its own closed after it.
    Everything else the functions send would pin and fails the run.
    """
    from registry.migrate import OUTSIDE_TRANSACTION_APPLICATION

    bad = []
    for pin in proxy.pins:
        size_only = all(r.startswith("statement text over") for r in pin.reasons)
        if pin.application_name == "workspace-registry-migrate":
            if all(r.startswith(("statement text over", "transaction-scoped")) for r in pin.reasons):
                continue
        elif pin.application_name == OUTSIDE_TRANSACTION_APPLICATION:
            continue
        elif pin.application_name == "workspace-registry":
            if size_only and re.search(r"registry_\w+_v\d+\(", pin.statement):
                continue
        else:
            continue  # tests' own connections (application_name unset) are not the functions'
        bad.append(pin)
    return bad


def pytest_terminal_summary(terminalreporter):
    proxy = _session_proxy
    if proxy is None:
        return
    by_app = ", ".join(f"{app or '(tests)'}: {n}" for app, n in sorted(proxy.connections.items()))
    pinned = Counter(p.application_name or "(tests)" for p in proxy.pins)
    terminalreporter.write_line(
        f"RDS Proxy stand-in: sessions {by_app or 'none'}; statements {sum(proxy.statements.values())}; "
        f"pinning statements {dict(pinned) or 0}; refused {len(proxy.refused)}"
    )


@dataclass
class Bus:
    """The moto EventBridge bus and the SQS queue its catch-all rule feeds."""

    sqs: object
    queue_url: str

    def received(self) -> list[dict]:
        """Every event delivered since the last call: EventBridge envelopes."""
        out = []
        while batch := harness.drain_queue(self.sqs, self.queue_url):
            out.extend(batch)
        return out

    def types(self) -> list[str]:
        return [e["detail-type"] for e in self.received()]


@pytest.fixture(scope="session")
def aws():
    from moto import mock_aws

    with mock_aws():
        import boto3

        sqs = boto3.client("sqs")
        queue_url = harness.tap_bus(boto3.client("events"), sqs, harness.BUS, "registry-events", {"source": ["workspace-registry"]})
        yield Bus(sqs, queue_url)


@pytest.fixture
def pg(servers):
    """A separate connection for assertions on rows (not the handlers' one)."""
    import psycopg2

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def rds(servers):
    import redis

    r = redis.Redis.from_url(servers.redis_url, decode_responses=True)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def clean_state(request):
    """Every test starts with empty tables, an empty Redis, an empty queue."""
    if "servers" not in request.fixturenames and "registry" not in request.fixturenames:
        yield
        return
    servers = request.getfixturevalue("servers")
    bus = request.getfixturevalue("aws")
    import psycopg2
    import redis

    from registry import db, events, liveness, service, urlguard

    conn = psycopg2.connect(servers.database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE workspaces, workspace_auth_tokens, structure_events, a2a_queue CASCADE")
        cur.execute("UPDATE registry_sweep_state SET self_preservation = 'normal', self_preservation_since = NULL")
    conn.close()
    redis.Redis.from_url(servers.redis_url).flushall()
    bus.received()
    events.reset_client()
    liveness.reset()
    db.close()
    service.resolver = fake_dns({})
    yield
    service.resolver = urlguard.resolve_with_dns


@pytest.fixture
def env(monkeypatch):
    """Set registry settings for one test: env(NAME=value, ...)."""
    from registry import settings

    def set_(**values):
        for k, v in values.items():
            monkeypatch.setenv(k, str(v))
        settings.get_settings.cache_clear()

    yield set_
    monkeypatch.undo()
    settings.get_settings.cache_clear()


@pytest.fixture
def use_redis(monkeypatch):
    """use_redis(server, **settings): the registry talks to this
    harness.RedisServer (with these settings) until the test ends; then the
    server stops and the session's Redis is back."""
    from registry import liveness, settings

    started = []

    def point(server, **values):
        started.append(server)
        monkeypatch.setenv("REDIS_URL", server.url)
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(liveness, "_steady_sha", None)  # the script is not loaded there yet
        settings.get_settings.cache_clear()
        liveness.reset()
        return server

    yield point
    for server in started:
        server.stop()
    monkeypatch.undo()
    settings.get_settings.cache_clear()
    liveness.reset()


def wait_for_lock_wait(pg, application_name: str = "workspace-registry", timeout: float = 10.0) -> None:
    """Until a connection of ``application_name`` waits on a lock: races are
    staged on Postgres' own word (pg_stat_activity), never on a sleep."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pg.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'", (application_name,))
            if cur.fetchone()[0]:
                return
        time.sleep(0.005)
    raise AssertionError(f"no {application_name} connection waited on a lock within {timeout} s")


def wait_for_backend_gone(pg, pid: int, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pg.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cur.fetchone()[0] == 0:
                return
        time.sleep(0.005)
    raise AssertionError(f"backend {pid} still there after {timeout} s")


def fake_dns(table: dict[str, list[str]]):
    """A resolver that knows only ``table``: tests never touch the network."""

    def resolve(host: str) -> list[str]:
        if host in table:
            return table[host]
        raise OSError(f"fake DNS: {host} does not resolve")

    return resolve


@dataclass
class Answer:
    status: int
    headers: dict
    raw: str

    @property
    def body(self):
        return json.loads(self.raw)


# The API Gateway payload format the handler tests speak: "rest" (REST API,
# payload 1.0, what the template deploys by default) or "http" (HTTP API,
# payload 2.0, ApiType=HTTP). Every test in a BOTH_FORMATS module runs once
# in each (test ids end in [rest] / [http]): the seed-parity cases, the
# auth cases and every sample event. The rest of the suite speaks REST;
# tests/test_api_formats.py covers what differs in 2.0 (headers, cookies,
# stage prefix, encodings, every error answer).
API_FORMATS = ("rest", "http")
BOTH_FORMATS = {"test_seed_parity.py", "test_security.py", "test_events_files.py"}
_api_format = "rest"


def pytest_generate_tests(metafunc):
    if metafunc.definition.path.name in BOTH_FORMATS:
        metafunc.parametrize("api_format", API_FORMATS, indirect=True)


@pytest.fixture(autouse=True)
def api_format(request) -> str:
    """The payload format call() and sample_event() use in this test."""
    global _api_format
    _api_format = getattr(request, "param", "rest")
    yield _api_format
    _api_format = "rest"


def sample_event(name: str, api_format: str | None = None) -> dict:
    """events/<name> in the test's payload format (or ``api_format``)."""
    return harness.sample_event(name, api_format or _api_format)


def body_routes() -> list[str]:
    """Every route that takes a JSON body (the POST ones)."""
    return [resource for resource, route in harness.routes().items() if route.method == "POST"]


def invoke(event: dict) -> Answer:
    """Run the function that owns the event's route, as Lambda would."""
    result = harness.invoke(event)
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for k, v in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), v[0] if isinstance(v, list) and v else v)
    return Answer(result["statusCode"], headers, result["body"])


def call(route: str, body, *, token: str | None = None, headers: dict | None = None, raw: str | None = None) -> Answer:
    """POST ``body`` to ``route`` through the sample event of that route,
    in the test's payload format."""
    raw = raw if raw is not None else json.dumps(body)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return invoke(harness.api_event(route, api_format=_api_format, raw=raw, token=token, headers=hdrs))


def get(resource: str, params: dict[str, str], *, token: str | None = None, headers: dict | None = None, query: dict | None = None) -> Answer:
    """GET ``resource`` with its path parameters filled in, through the
    sample event of that route, in the test's payload format (no
    X-Workspace-ID unless given)."""
    event = harness.api_event(resource, api_format=_api_format, token=token, headers=dict(headers or {}), params=params, query=query or {})
    return invoke(event)


def new_id() -> str:
    return str(uuid.uuid4())


class Registry:
    """Shorthand for the three calls, used by most tests."""

    def register(self, ws_id=None, url="http://localhost:8000", card=None, token=None, raw=None, dns=None, **kw) -> Answer:
        body = {"id": ws_id or new_id(), "url": url, "agent_card": card if card is not None else {"name": "agent"}}
        if dns is not None:
            from registry import service

            service.resolver = fake_dns(dns)
        return call("/registry/register", body, token=token, raw=raw, **kw)

    def register_body(self, body, token=None, **kw) -> Answer:
        return call("/registry/register", body, token=token, **kw)

    def heartbeat_body(self, body, token=None, **kw) -> Answer:
        return call("/registry/heartbeat", body, token=token, **kw)

    def update_card_body(self, body, token=None, **kw) -> Answer:
        return call("/registry/update-card", body, token=token, **kw)

    def heartbeat_raw(self, raw, token=None, **kw) -> Answer:
        return call("/registry/heartbeat", None, token=token, raw=raw, **kw)

    def update_card_raw(self, raw, token=None, **kw) -> Answer:
        return call("/registry/update-card", None, token=token, raw=raw, **kw)

    def heartbeat(self, ws_id, token=None, **fields) -> Answer:
        return call("/registry/heartbeat", {"workspace_id": ws_id, **fields}, token=token)

    def deregister(self, ws_id, token=None, **kw) -> Answer:
        return call("/registry/deregister", {"workspace_id": ws_id}, token=token, **kw)

    def sweep(self) -> dict:
        return harness.invoke(sample_event("liveness_sweep.json"), harness.SWEEP)

    def update_card(self, ws_id, card, token=None) -> Answer:
        return call("/registry/update-card", {"workspace_id": ws_id, "agent_card": card}, token=token)

    def discover(self, caller, target, token=None, headers=None) -> Answer:
        hdrs = {} if caller is None else {"X-Workspace-ID": caller}
        hdrs.update(headers or {})
        return get("/registry/discover/{id}", {"id": target}, token=token, headers=hdrs)

    def peers(self, ws_id, token=None, q=None, headers=None) -> Answer:
        return get("/registry/{id}/peers", {"id": ws_id}, token=token, headers=headers, query=None if q is None else {"q": q})

    def check_access(self, caller, target, token=None, **kw) -> Answer:
        return call("/registry/check-access", {"caller_id": caller, "target_id": target}, token=token, **kw)

    def check_access_body(self, body, token=None, **kw) -> Answer:
        return call("/registry/check-access", body, token=token, **kw)

    def registered(self, card=None, url="http://localhost:8000") -> tuple[str, str]:
        ws_id = new_id()
        answer = self.register(ws_id, url=url, card=card)
        assert answer.status == 200, answer.raw
        return ws_id, answer.body["auth_token"]


# ------------------------------------------------ CloudFormation's side


class Recorder:
    """What CloudFormation would have received."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0  # answer HTTP 500 this many times first

    @property
    def answers(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]


@pytest.fixture
def cfn():
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            status = 500 if recorder.fail_next > 0 else 200
            recorder.fail_next = max(0, recorder.fail_next - 1)
            recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body, "status": status})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/cfn-response?X-Amz-Signature=abc"
    yield recorder
    server.shutdown()
    server.server_close()


def custom_resource_event(kind: str, url: str, physical_id: str | None = None) -> dict:
    """What CloudFormation sends the migration custom resource."""
    event = {
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:registry-migrate",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/registry/1234",
        "RequestId": f"req-{kind}-{time.monotonic_ns()}",
        "LogicalResourceId": "SchemaMigration",
        "ResourceType": "Custom::SchemaMigration",
        "ResourceProperties": {"ServiceToken": "x", "SharedLayerVersion": "arn:aws:lambda:us-east-1:123456789012:layer:shared:7"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


@pytest.fixture(scope="module")
def sam() -> dict:
    """template.yaml as cfn-lint decodes it, as plain dicts, lists and strings."""
    from cfnlint.decode import decode

    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors, [str(e) for e in errors]
    return json.loads(json.dumps(template))


@pytest.fixture
def counts(registry):
    """Round trips counted at the drivers (devstack.harness.RoundTrips),
    after one warm-up call: a warm container's connections are open."""
    with harness.RoundTrips() as c:
        registry.register()
        c.reset()
        yield c


@pytest.fixture
def registry(servers, aws) -> Registry:
    return Registry()
