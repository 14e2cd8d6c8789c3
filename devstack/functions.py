"""The project's Lambda functions as the local runner serves them.

Every ``functions/<name>/app.py`` is imported as it would be in its own
container and asked for its routes: the Powertools resolver it builds at
module level already knows them, so a new route is served locally as soon
as its function exists, without touching the runner. A function without a
resolver (the liveness sweep) is a scheduled one.

Also here: a function's proxy result as the HTTP answer API Gateway makes
of it. The events themselves, the context and the loader are
devstack/harness.py's, shared with the tests and the benchmark.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from devstack.harness import FUNCTIONS_DIR, load_function


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
    """functions/<name>/app.py (devstack.harness.load_function) and its routes."""
    module = load_function(name, functions_dir)
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

