"""HTTP glue the handlers share: reading bodies safely, the bearer token,
turning failures into the status codes DESIGN.md pins, and answering both
API Gateway payload formats (REST API v1 and HTTP API 2.0) through the
same routes.

Bodies are checked before pydantic sees them, because Postgres refuses
some things JSON allows: NUL characters in text and JSONB, lone UTF-16
surrogates, non-finite numbers. Each is a 400 with its reason here rather
than a driver error (a 500) later.
"""

from __future__ import annotations

import base64
import hashlib
import binascii
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    ApiGatewayResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from pydantic import BaseModel, ValidationError

from registry import limits, tokens
from registry.db import DatabaseUnavailable
from registry.models import UUID, UUID_EXAMPLE
from registry.observability import count, logger
from registry.settings import get_settings

M = TypeVar("M", bound=BaseModel)

# Agent cards and other JSON values nest far less than this; deeper input
# is refused before it can exhaust a parser's stack (ours or Postgres').
MAX_JSON_DEPTH = 32


class ApiError(Exception):
    """An answer other than 200: status code and the reason for the body
    (plus any fields the seed's answer carries beside it, such as discover's
    {"error": "workspace not available", "status": ...})."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None, fields: dict[str, Any] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.fields = fields or {}


def error_response(status: int, reason: str, headers: dict[str, str] | None = None, fields: dict[str, Any] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": reason, **(fields or {})}),
        headers=headers or {},
    )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_int(literal: str) -> int:
    # Python refuses to convert very long literals with advice about
    # sys.set_int_max_str_digits(); the caller gets the rule instead.
    digits = len(literal.lstrip("-"))
    if digits > limits.MAX_INTEGER_LITERAL_DIGITS:
        raise _BadNumber(f"body contains a {digits}-digit number (at most {limits.MAX_NUMBER_CHARS} digits once stored); send it as a string")
    return int(literal)


class _BadNumber(ValueError):
    pass


def _where(path: tuple) -> str:
    """agent_card.skills[0].id, as the reader wrote it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _check_value(value: Any, path: tuple = ()) -> None:
    if len(path) > MAX_JSON_DEPTH:
        raise ApiError(400, f"body nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(400, f"{_where(path)}: number out of range")
        # Postgres stores JSON numbers in full (registry/limits.py).
        reason = limits.number_too_long(value)
        if reason:
            raise ApiError(400, f"{_where(path)}: {reason}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_value(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, path + (index,))


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ApiError(400, "body contains a NUL character, which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "body contains an unpaired UTF-16 surrogate") from None


def read_json(event: dict) -> Any:
    """The request body as JSON, or ApiError 400/413 with the reason."""
    raw = event.get("body")
    if raw is None or raw == "":
        raise ApiError(400, "request body is required")
    limit = get_settings().max_body_bytes
    if event.get("isBase64Encoded"):
        if len(raw) > (limit * 4) // 3 + 4:
            raise ApiError(413, f"request body is larger than {limit} bytes")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "request body is not valid base64") from None
    else:
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > limit:
        raise ApiError(413, f"request body is larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except RecursionError:
        raise ApiError(400, f"body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except _BadNumber as err:
        raise ApiError(400, str(err)) from None
    except ValueError as err:  # JSONDecodeError (its message says where), NaN/Infinity
        raise ApiError(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    _check_value(value)
    return value


def parse(model: type[M], event: dict) -> M:
    """Read and validate a request body; 400 names the first bad field."""
    body = read_json(event)
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"]
        if first["type"] == "missing":
            message = "is required"
        raise ApiError(400, f"{where}: {message}") from None


def is_http_api_event(event: dict) -> bool:
    """True for an HTTP API payload format 2.0 event; REST API events (and
    HTTP API format 1.0, which has the REST shape) carry no "2.0"."""
    return event.get("version") == "2.0"


def header(event: dict, name: str) -> str | None:
    """A header by case-insensitive name; repeated differing values are refused.

    REST events list every value of a repeated header in multiValueHeaders.
    Payload 2.0 has no such field: it joins repeated values with commas in
    ``headers``, so there a comma separates values. The headers read here
    (Authorization) never carry a comma in a valid value, so a comma-joined
    value with different parts is refused exactly like a repeated header.
    """
    wanted = name.lower()
    joined = is_http_api_event(event)
    values: set[str] = set()
    for key, value in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == wanted and value:
            values.update(v for v in value if v is not None)
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted and value is not None:
            if joined and isinstance(value, str):
                values.update(part.strip() for part in value.split(","))
            else:
                values.add(value)
    if len(values) > 1:
        raise ApiError(400, f"{name} header is repeated with different values")
    return values.pop() if values else None


def header_values(event: dict, name: str) -> list[str]:
    """Every comma-separated element of a list-valued header (If-None-Match),
    across repeats: RFC 9110 makes repeated list headers one list."""
    wanted = name.lower()
    raw: list[str] = []
    for key, value in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == wanted and value:
            raw.extend(v for v in value if isinstance(v, str))
    if not raw:
        raw = [v for k, v in (event.get("headers") or {}).items() if k.lower() == wanted and isinstance(v, str)]
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


def etag_of(body: str) -> str:
    """A strong ETag: the answer's own hash, so equal answers share it
    whichever container or path (Redis or Postgres) produced them."""
    return '"' + hashlib.sha256(body.encode("utf-8")).hexdigest()[:32] + '"'


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def conditional_json(event: dict, body: str, *, max_age: int, vary: str) -> Response:
    """A 200 with ETag and Cache-Control, or a 304 with no body when the
    request's If-None-Match names the answer (weak comparison, RFC 9110
    13.1.2: a client may send a weak form of our tag back)."""
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={max_age}", "Vary": vary}
    wanted = header_values(event, "If-None-Match")
    if "*" in wanted or _opaque(etag) in {_opaque(tag) for tag in wanted}:
        count("NotModified")
        return Response(status_code=304, body="", headers=headers)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


class Credentials:
    """What the caller presented in Authorization, reduced to a hash."""

    __slots__ = ("presented", "token_hash")

    def __init__(self, presented: bool, token_hash: bytes | None):
        self.presented = presented
        self.token_hash = token_hash

    @classmethod
    def from_event(cls, event: dict) -> Credentials:
        raw = header(event, "Authorization")
        try:
            token = tokens.bearer_token(raw)
        except tokens.BadAuthorization:
            # Malformed: it was presented, so the caller is told the token is
            # invalid rather than missing, and the SQL sees a token that
            # matches none (not "no token", which a first registration or a
            # lost-answer retry presents). The header is hashed like a token
            # and never logged or stored.
            return cls(True, hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest())
        if token is None:
            return cls(False, None)
        return cls(True, tokens.hash_token(token))


def workspace_id(value: str | None, what: str) -> str:
    """A workspace id from a header, the path or the query, as Postgres
    prints it; 400 naming where it came from otherwise."""
    value = value or ""
    if not UUID.fullmatch(value):
        raise ApiError(400, f"{what} must be a UUID such as {UUID_EXAMPLE}")
    return value.lower()


def unauthorized(credentials: Credentials) -> ApiError:
    count("AuthFailures")
    if credentials.presented:
        return ApiError(401, "invalid workspace auth token")
    return ApiError(401, "missing workspace auth token")


def install_error_handlers(app: ApiGatewayResolver) -> None:
    """Every failure answers JSON {"error": reason}; nothing escapes as a 502."""

    @app.exception_handler(ApiError)
    def _api_error(err: ApiError) -> Response:
        count(f"Http{err.status}")
        return error_response(err.status, err.reason, err.headers, err.fields)

    @app.exception_handler(DatabaseUnavailable)
    def _db_down(err: DatabaseUnavailable) -> Response:
        # Driver text stays in the logs (it can name hosts and users).
        count("DatabaseFailures")
        logger.warning("database unavailable", extra={"cause": repr(err.__cause__)[:300]})
        retry_after = str(get_settings().retry_after_seconds)
        return error_response(503, "database unavailable, retry later", {"Retry-After": retry_after})

    @app.exception_handler(NotFoundError)
    def _no_route(_: NotFoundError) -> Response:
        return error_response(404, "no such route")

    @app.exception_handler(Exception)
    def _unexpected(err: Exception) -> Response:
        # A bug, not an input problem: logged with its trace, answered
        # opaquely. Tests treat any 500 as a failure.
        logger.exception("unhandled error")
        count("UnhandledErrors")
        return error_response(500, "internal error")


class Resolver:
    """One function's routes, answered in both API Gateway payload formats.

    The template can put the functions behind a REST API (payload 1.0) or an
    HTTP API (payload 2.0). Powertools has one resolver per format; this
    registers every route on both and hands each event to the one that
    reads its format, so a handler is written once and the response comes
    back in the format the caller's API expects (2.0: cookies apart,
    repeated headers joined). Routes are declared as on a Powertools
    resolver: ``@app.post("/registry/heartbeat")``.
    """

    def __init__(self) -> None:
        self.rest = APIGatewayRestResolver()
        self.http = APIGatewayHttpResolver()
        for app in (self.rest, self.http):
            install_error_handlers(app)
        self._active: ApiGatewayResolver = self.rest

    def route(self, rule: str, method: str) -> Callable:
        def register(func: Callable) -> Callable:
            self.rest.route(rule, method)(func)
            self.http.route(rule, method)(func)
            return func

        return register

    def get(self, rule: str) -> Callable:
        return self.route(rule, "GET")

    def post(self, rule: str) -> Callable:
        return self.route(rule, "POST")

    @property
    def current_event(self):
        """The event being answered, as the resolver of its format reads it."""
        return self._active.current_event

    def resolve(self, event: dict, context) -> dict:
        self._active = self.http if is_http_api_event(event) else self.rest
        return self._active.resolve(event, context)


def resolver() -> Resolver:
    return Resolver()
