"""The project's Lambda functions as the local runner and the tests see them.

Every ``functions/<name>/app.py`` is imported as it would be in its own
container and asked for its routes: the Powertools resolver it builds at
module level already knows them, so a new route is served locally as soon
as its function exists, without touching the runner. A function without a
resolver (the liveness sweep) is a scheduled one.

Also here: the API Gateway proxy event a request becomes (REST API,
payload 1.0, as deployed by default; or HTTP API, payload 2.0), the
scheduled event the sweep receives and the Lambda context object, so the
runner and the tests build them the same way.
"""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO / "functions"
# The layer on sys.path, as Lambda puts /opt/python there.
if str(REPO / "layers" / "shared") not in sys.path:
    sys.path.insert(0, str(REPO / "layers" / "shared"))

REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGE = "local"
SWEEP = "liveness_sweep"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Powertools form: /registry/<id>
    resource: str  # API Gateway form: /registry/{id}
    rule: re.Pattern
    function: Function = field(compare=False, repr=False)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route serves the request, else None."""
        if method.upper() != self.method:
            return None
        found = self.rule.match(path)
        return None if found is None else found.groupdict()


@dataclass
class Function:
    name: str
    module: ModuleType
    routes: list[Route] = field(default_factory=list)

    @property
    def handler(self):
        return self.module.lambda_handler

    @property
    def summary(self) -> str:
        """The module docstring's first line, without its "POST /path: " prefix."""
        doc = (self.module.__doc__ or "").strip().splitlines()
        first = doc[0] if doc else ""
        return first.split(": ", 1)[1] if ": " in first else first


def load(name: str, functions_dir: Path = FUNCTIONS_DIR) -> Function:
    """Import functions/<name>/app.py under a module name of its own."""
    path = functions_dir / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"local_fn_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = Function(name, module)
    resolver = getattr(module, "app", None)
    # registry.api.Resolver keeps the same routes on one Powertools resolver
    # per payload format; its REST one lists them.
    resolver = getattr(resolver, "rest", resolver)
    # Powertools keeps a resolver's routes in these two lists; both hold
    # Route objects with method, path, openapi_path and the compiled rule.
    for route in list(getattr(resolver, "_static_routes", [])) + list(getattr(resolver, "_dynamic_routes", [])):
        resource = getattr(route, "openapi_path", None) or re.sub(r"<(\w+)>", r"{\1}", route.path)
        function.routes.append(Route(route.method, route.path, resource, route.rule, function))
    return function


def discover(functions_dir: Path = FUNCTIONS_DIR, on_error=None) -> list[Function]:
    """Every function with an app.py, in name order.

    A module that fails to import raises, unless ``on_error(name, error)``
    is given: the local runner reports it and serves the others.
    """
    found = []
    for path in sorted(functions_dir.glob("*/app.py")):
        try:
            found.append(load(path.parent.name, functions_dir))
        except Exception as err:
            if on_error is None:
                raise
            on_error(path.parent.name, err)
    return found


def route_table(functions: list[Function]) -> list[Route]:
    routes = [route for function in functions for route in function.routes]
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        key = (route.method, route.path)
        if key in seen:
            raise RuntimeError(f"{route.method} {route.path} is served by both functions/{seen[key]} and functions/{route.function.name}")
        seen[key] = route.function.name
    # Static paths before dynamic ones, as API Gateway prefers the most specific.
    return sorted(routes, key=lambda r: ("<" in r.path, r.path, r.method))


def find_route(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None


class LambdaContext:
    """What Lambda passes as ``context``; Powertools' Logger reads these."""

    def __init__(self, function_name: str, timeout_seconds: float = 30.0):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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


def rest_event(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route | None,
    path_parameters: dict[str, str] | None,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """The API Gateway REST API proxy event for one HTTP request.

    A body that is UTF-8 text is passed as text, as API Gateway does when no
    binary media types are configured; other bytes are passed base64-encoded
    with isBase64Encoded, so the function sees exactly what was sent.
    """
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(parse_qsl(query, keep_blank_values=True))
    if not body:
        text, encoded = None, False
    else:
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    resource = route.resource if route else path
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "extendedRequestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "domainName": host,
            "resourceId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def http_event(
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route | None,
    path_parameters: dict[str, str] | None,
    source_ip: str,
    host: str,
    stage: str = "$default",
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event for one request.

    Same arguments as rest_event, plus the stage ($default locally, as
    `sam local start-api` uses for HTTP APIs). What differs from the REST
    event: header names are lower case and a repeated header is one
    comma-joined value (no multiValueHeaders), Cookie headers become the
    ``cookies`` list, the query string is kept raw and repeated parameters
    are comma-joined, fields with nothing in them are left out, and
    ``rawPath`` starts with the stage unless it is $default.
    """
    return _http_event(method, path, query, headers, body, route.resource if route else None, path_parameters, source_ip, host, stage)


def _http_event(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    resource: str | None,
    path_parameters: dict[str, str] | None,
    source_ip: str,
    host: str,
    stage: str,
) -> dict[str, Any]:
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    route_key = f"{method} {resource}" if resource else "$default"
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if params:
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": "local",
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
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
    if body:
        try:
            event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
    else:
        event["isBase64Encoded"] = False
    return event


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
    method, resource = event["httpMethod"], event.get("resource") or event["path"]
    converted = _http_event(
        method,
        event["path"],
        query,
        headers,
        raw,
        resource,
        event.get("pathParameters"),
        (context.get("identity") or {}).get("sourceIp", ""),
        context.get("domainName") or "",
        context.get("stage") or "$default",
    )
    converted["requestContext"].update(
        {
            "accountId": context.get("accountId", ACCOUNT),
            "apiId": context.get("apiId", "local"),
            "requestId": context.get("requestId", converted["requestContext"]["requestId"]),
            "time": context.get("requestTime", converted["requestContext"]["time"]),
            "timeEpoch": context.get("requestTimeEpoch", converted["requestContext"]["timeEpoch"]),
        }
    )
    identity = context.get("identity") or {}
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


HTTP_API_SAMPLES = "http-api"


def http_api_samples(events_dir: Path = REPO / "events") -> dict[str, str]:
    """events/http-api/<name>.json for every REST API sample events/<name>.json:
    the same request in payload format 2.0, as files' text."""
    import json

    samples = {}
    for path in sorted(events_dir.glob("*.json")):
        event = json.loads(path.read_text())
        if "httpMethod" in event:
            samples[path.name] = json.dumps(http_event_from_rest(event), indent=2) + "\n"
    return samples


EVENT_BUILDERS = {"rest": rest_event, "http": http_event}


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


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_answer(result: Any) -> HttpAnswer:
    """A proxy integration result as HTTP; TypeError when it is malformed
    (API Gateway answers 502 then)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise TypeError("malformed Lambda proxy response: no integer statusCode")
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), str(value)))
    multi_names = {name.lower() for name in multi}
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in multi_names:
            headers.append((str(name), str(value)))
    # Payload 2.0 answers carry cookies apart; each becomes a Set-Cookie.
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", str(cookie)))
    body = result.get("body")
    if body is None:
        raw = b""
    elif result.get("isBase64Encoded"):
        raw = base64.b64decode(body)
    else:
        raw = str(body).encode("utf-8")
    return HttpAnswer(result["statusCode"], headers, raw)


if __name__ == "__main__":
    # python -m devstack.functions: (re)write events/http-api/ from the REST samples.
    out = REPO / "events" / HTTP_API_SAMPLES
    out.mkdir(exist_ok=True)
    for name, text in http_api_samples().items():
        (out / name).write_text(text)
        print(f"events/{HTTP_API_SAMPLES}/{name}")
