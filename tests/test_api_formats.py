"""What changes when the functions sit behind the HTTP API (ApiType=HTTP,
payload format 2.0) instead of the REST API.

The seed-parity cases, the auth cases and every sample event already run in
both formats (conftest.BOTH_FORMATS). This file covers what only 2.0 has:
lower-case header names and repeated headers joined with commas (the
Authorization safety must hold), cookies apart, the stage in rawPath,
bodies that may be absent or base64, and the answer's own shape, error
answers included. Every test here speaks 2.0.
"""

from __future__ import annotations

import base64
import json

import pytest

from conftest import body_routes, call, invoke, new_id, sample_event
from test_update_card import card_of

from devstack import harness

pytestmark = pytest.mark.parametrize("api_format", ["http"], indirect=True)

# The documented 2.0 event (API Gateway developer guide, "Create AWS Lambda
# proxy integrations for HTTP APIs", payload format structure): the fields
# a sample may carry, top level and in requestContext.
DOCUMENTED_FIELDS = {
    "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters",
    "requestContext", "body", "pathParameters", "isBase64Encoded", "stageVariables",
}  # fmt: skip
DOCUMENTED_CONTEXT = {
    "accountId", "apiId", "authentication", "authorizer", "domainName", "domainPrefix", "http",
    "requestId", "routeKey", "stage", "time", "timeEpoch",
}  # fmt: skip
DOCUMENTED_HTTP = {"method", "path", "protocol", "sourceIp", "userAgent"}
# What a 2.0 answer may hold (Powertools' HTTP API response).
ANSWER_FIELDS = {"statusCode", "headers", "cookies", "body", "isBase64Encoded"}


def raw_answer(event: dict, function: str = "heartbeat") -> dict:
    """The handler's return value itself, not the conftest summary of it."""
    return harness.invoke(event, function)


def heartbeat_event(ws: str, **fields) -> dict:
    event = sample_event("heartbeat.json")
    event["body"] = json.dumps({"workspace_id": ws})
    event["isBase64Encoded"] = False
    event.update(fields)
    return event


# ---------------------------------------------------------------- the answer


def test_answers_come_back_in_the_2_0_shape(registry):
    ws, token = registry.registered()
    event = heartbeat_event(ws)
    event["headers"]["authorization"] = f"Bearer {token}"
    for answer, status, keys in ((raw_answer(event), 200, {"status"}), (raw_answer(heartbeat_event(new_id())), 404, {"error"})):
        assert answer["statusCode"] == status
        assert set(answer) <= ANSWER_FIELDS, answer  # no multiValueHeaders in 2.0
        assert answer["headers"]["Content-Type"] == "application/json"
        assert answer["isBase64Encoded"] is False
        assert set(json.loads(answer["body"])) == keys


def test_an_unexpected_error_is_a_json_500_in_2_0_too(registry, monkeypatch):
    """The error handlers are installed on the 2.0 resolver as well."""
    from registry import service

    def broken(*_):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "heartbeat", broken)
    answer = raw_answer(heartbeat_event(new_id()))
    assert answer["statusCode"] == 500 and json.loads(answer["body"]) == {"error": "internal error"}


# ---------------------------------------------------------------- headers


def test_repeated_identical_authorization_is_one_token(registry):
    ws, token = registry.registered()
    for joined in (f"Bearer {token},Bearer {token}", f"Bearer {token}, Bearer {token}"):
        event = heartbeat_event(ws)
        event["headers"]["authorization"] = joined
        assert invoke(event).status == 200, joined


@pytest.mark.parametrize(
    "value",
    ["Bearer {token},Bearer someone-elses-token", "Bearer someone-elses-token,Bearer {token}", "Bearer {token},", ",Bearer {token}"],
    ids=["theirs-second", "theirs-first", "trailing-comma", "leading-comma"],
)
def test_repeated_differing_authorization_is_refused(registry, pg, value):
    """2.0 joins repeated headers with commas; a token never has one, so
    differing parts are a repeated header and refused, as in REST."""
    ws, token = registry.registered()
    for route, body in [
        ("/registry/heartbeat", {"workspace_id": ws}),
        ("/registry/update-card", {"workspace_id": ws, "agent_card": {"evil": True}}),
        ("/registry/register", {"id": ws, "url": "http://localhost:1", "agent_card": {"evil": True}}),
        ("/registry/deregister", {"workspace_id": ws}),
    ]:
        a = call(route, body, headers={"authorization": value.format(token=token)})
        assert a.status == 400, (route, a.raw)
        assert a.body == {"error": "Authorization header is repeated with different values"}
    assert card_of(pg, ws) == {"name": "agent"}
    assert registry.heartbeat(ws, token).status == 200  # still online, token intact


def test_header_names_differing_only_in_case_are_one_header(registry, pg):
    ws, token = registry.registered()
    body = {"workspace_id": ws, "agent_card": {"evil": True}}
    a = call("/registry/update-card", body, headers={"AUTHORIZATION": "Bearer other"}, token=token)
    assert a.status == 400
    assert card_of(pg, ws) == {"name": "agent"}


def test_the_local_runner_joins_repeated_headers_as_api_gateway_does(registry, pg):
    from devstack import functions as fn

    ws, token = registry.registered()
    routes = fn.route_table(fn.discover())
    route, params = fn.find_route(routes, "POST", "/registry/update-card")
    body = json.dumps({"workspace_id": ws, "agent_card": {"evil": True}}).encode()
    pairs = [("Content-Type", "application/json"), ("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")]
    event = harness.http_event(harness.Request("POST", "/registry/update-card", headers=pairs, body=body), route.resource, params)
    assert event["headers"]["authorization"] == f"Bearer {token},Bearer other"
    assert fn.http_answer(harness.invoke(event, route.function.name)).status == 400
    assert card_of(pg, ws) == {"name": "agent"}
    event["headers"]["authorization"] = f"Bearer {token}"
    event["body"] = json.dumps({"workspace_id": ws, "agent_card": {"name": "updated"}})
    assert fn.http_answer(harness.invoke(event, route.function.name)).status == 200


def test_cookies_and_query_strings_change_nothing(registry):
    ws, token = registry.registered()
    event = heartbeat_event(ws, cookies=["session=abc", "authorization=Bearer nope"], rawQueryString="a=1&a=2")
    event["queryStringParameters"] = {"a": "1,2"}
    event["headers"]["authorization"] = f"Bearer {token}"
    assert invoke(event).status == 200
    # Without the header, a token in a cookie is not a token.
    del event["headers"]["authorization"]
    assert invoke(event).status == 401


# ---------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "stage, raw_path",
    [("prod", "/prod/registry/heartbeat"), ("$default", "/registry/heartbeat")],
    ids=["named-stage", "default-stage"],
)
def test_the_route_is_found_with_or_without_the_stage_in_raw_path(registry, stage, raw_path):
    """A named stage (the template's) starts rawPath, also behind a custom
    domain's API mapping; the $default stage (sam local, the local runner)
    does not."""
    ws, token = registry.registered()
    event = heartbeat_event(ws, rawPath=raw_path)
    event["requestContext"]["stage"] = stage
    event["requestContext"]["http"]["path"] = raw_path
    event["headers"]["authorization"] = f"Bearer {token}"
    assert invoke(event).status == 200


@pytest.mark.parametrize("method, raw_path", [("POST", "/prod/registry/heartbeat/extra"), ("GET", "/prod/registry/heartbeat")])
def test_a_request_no_route_serves_is_a_json_404(registry, method, raw_path):
    event = heartbeat_event(new_id(), rawPath=raw_path)
    event["requestContext"]["http"].update(method=method, path=raw_path)
    answer = raw_answer(event)
    assert answer["statusCode"] == 404 and json.loads(answer["body"]) == {"error": "no such route"}


def test_every_function_serves_the_same_routes_in_both_formats():
    from devstack import functions as fn

    for function in fn.discover():
        app = getattr(function.module, "app", None)
        if app is None:
            continue  # the scheduled sweep, the migration custom resource
        rest = {(r.method, r.path) for r in app.rest._static_routes + app.rest._dynamic_routes}
        http = {(r.method, r.path) for r in app.http._static_routes + app.http._dynamic_routes}
        assert rest == http and rest, function.name


def test_a_read_route_with_a_path_parameter_answers_both_formats():
    """The routes still to come (GET /registry/discover/{id}, /registry/{id}/peers,
    /admin/...) are declared once and served in both formats, path
    parameters included."""
    from registry import api

    app = api.resolver()

    @app.get("/registry/<workspace_id>/peers")
    def peers(workspace_id):
        return {"workspace": workspace_id, "format": "2.0" if api.is_http_api_event(app.current_event.raw_event) else "1.0"}

    ws = new_id()
    request = harness.Request("GET", f"/registry/{ws}/peers", headers=[("Accept", "application/json")])
    resource, params = "/registry/{workspace_id}/peers", {"workspace_id": ws}
    for event, expected in ((harness.rest_event(request, resource, params), "1.0"), (harness.http_event(request, resource, params, stage="prod"), "2.0")):
        answer = app.resolve(event, harness.LambdaContext())
        assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"workspace": ws, "format": expected}


# ---------------------------------------------------------------- bodies


def test_bodies_absent_base64_too_large_or_not_utf8(registry):
    ws = new_id()
    event = sample_event("register.json")
    del event["body"]  # 2.0 leaves the field out when there is no body
    answer = invoke(event)
    assert (answer.status, answer.body) == (400, {"error": "request body is required"})
    body = json.dumps({"id": ws, "url": "http://localhost:1", "agent_card": {}}).encode()
    event.update(isBase64Encoded=True, body=base64.b64encode(body).decode())
    assert invoke(event).status == 200
    event["body"] = "!!!not base64"
    assert invoke(event).status == 400
    event["body"] = base64.b64encode(b"\xff\xfe{}").decode()
    assert "UTF-8" in invoke(event).body["error"]
    event["body"] = base64.b64encode(b"x" * 70_000).decode()
    assert invoke(event).status == 413


def test_odd_raw_bodies_are_refused_in_2_0(registry):
    from test_bad_input import RAW_BODIES

    for route in body_routes():
        for raw in RAW_BODIES:
            a = call(route, None, raw=raw)
            assert 400 <= a.status < 500 and a.body["error"], (route, raw[:40], a.raw)


# ---------------------------------------------------------------- the sample files


def test_http_api_samples_have_the_documented_shape():
    files = sorted((harness.EVENTS_DIR / harness.HTTP_API_SAMPLES).glob("*.json"))
    assert files
    for path in files:
        event = json.loads(path.read_text())
        context = event["requestContext"]
        assert event["version"] == "2.0", path.name
        assert set(event) <= DOCUMENTED_FIELDS and set(context) <= DOCUMENTED_CONTEXT, path.name
        assert set(context["http"]) == DOCUMENTED_HTTP, path.name
        assert "multiValueHeaders" not in event and "httpMethod" not in event, path.name
        assert all(name == name.lower() for name in event["headers"]), path.name
        method, route_path = event["routeKey"].split(" ", 1)
        assert context["routeKey"] == event["routeKey"] and context["http"]["method"] == method, path.name
        # A route with path parameters ({id}): the path has their values.
        for name, value in (event.get("pathParameters") or {}).items():
            route_path = route_path.replace("{" + name + "}", value)
        assert "{" not in route_path, path.name
        assert event["rawPath"] == context["http"]["path"] == f"/{context['stage']}{route_path}", path.name
        assert harness.request_of(event) == (method, route_path), path.name


def test_the_2_0_event_builder_and_answer():
    from devstack import functions as fn

    headers = [("Cookie", "s=1; t=2"), ("X-Twice", "a"), ("x-twice", "b"), ("User-Agent", "agent/1")]
    event = harness.http_event(harness.Request("POST", "/registry/heartbeat", "a=1&a=2&b=", headers, b"\xff", host="127.0.0.1:3000"))
    assert event["cookies"] == ["s=1", "t=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-twice"] == "a,b" and event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["rawQueryString"] == "a=1&a=2&b=" and event["rawPath"] == "/registry/heartbeat"
    assert event["requestContext"]["stage"] == "$default" and event["requestContext"]["http"]["userAgent"] == "agent/1"
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff"
    answer = fn.http_answer({"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1", "b=2"], "body": "x"})
    assert answer.headers == [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


# ---------------------------------------------------------------- make run ARGS=--http-api


def test_the_local_runner_serves_2_0_events_with_http_api(registry, pg):
    import io

    from devstack import functions as fn
    from devstack import local

    assert local.parse_args(["--http-api"]).http_api is True and local.parse_args([]).http_api is False
    seen: list[dict] = []

    class Recording(local.Invoker):
        def invoke(self, function, event):
            seen.append(event)
            return super().invoke(function, event)

    invoker = Recording()
    try:
        api = local.LocalApi(fn.discover(), invoker, local.Console(io.StringIO()), "http://127.0.0.1:3000", api_format="http")
        ws = new_id()
        body = json.dumps({"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "agent"}}).encode()
        status, _, raw = api.answer("POST", "/registry/register", "", [("Content-Type", "application/json")], body, "127.0.0.1")
        assert status == 200 and json.loads(raw)["status"] == "registered"
        (event,) = seen
        assert event["version"] == "2.0" and event["routeKey"] == "POST /registry/register" and "multiValueHeaders" not in event
        token = json.loads(raw)["auth_token"]
        twice = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")]
        card = json.dumps({"workspace_id": ws, "agent_card": {"evil": True}}).encode()
        assert api.answer("POST", "/registry/update-card", "", twice, card, "127.0.0.1")[0] == 400
        assert card_of(pg, ws) == {"name": "agent"}
        # No route: what an HTTP API answers (a REST API says 403 Missing Authentication Token).
        status, _, raw = api.answer("POST", "/registry/nope", "", [], b"", "127.0.0.1")
        assert status == 404 and json.loads(raw) == {"message": "Not Found"}
    finally:
        invoker.close()
