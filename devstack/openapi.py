"""The OpenAPI document of the local API, built from the payload models.

The handlers parse their bodies themselves with the pydantic models in
registry.models and do not turn on Powertools' validation (it would answer
422 instead of the seed's 400 and cost time on the hot path), so the
document is assembled here: each route's request body is the JSON Schema
of the model its function imports, every answer DESIGN.md pins is listed,
and the bearer token is optional (first registration and legacy
workspaces have none). What pydantic's schema leaves out is added, so that
a body the document calls valid or invalid is one the handlers accept or
refuse (tests/test_fuzz.py checks it): the UUID pattern of workspace ids,
null on the optional fields that take it, and in each body's description
the rules no JSON Schema can state.

Served by the local runner only, at /openapi.json and /swagger; nothing
here is deployed.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema

from devstack.functions import Function, Route

TITLE = "Workspace registry (local)"
VERSION = "0.1.0"

ERROR = {"$ref": "#/components/schemas/Error"}

# Success bodies the seed defines (DESIGN.md "Wire format"); a route not
# listed here is documented as {"status": string}.
SUCCESS: dict[str, dict[str, Any]] = {
    "/registry/register": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["registered"]},
            "auth_token": {
                "type": "string",
                "description": "Only in the answer to a workspace's first registration (and a legacy workspace's next one). "
                "Shown once: send it as 'Authorization: Bearer <token>' on every later call.",
            },
        },
    },
    "/registry/heartbeat": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}},
    "/registry/update-card": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["updated"]}}},
    # The read side (registry/discovery.py): the seed's shapes exactly.
    "/registry/discover/{id}": {"$ref": "#/components/schemas/DiscoverAnswer"},
    "/registry/{id}/peers": {"type": "array", "items": {"$ref": "#/components/schemas/Peer"}},
    "/registry/check-access": {
        "type": "object",
        "required": ["allowed"],
        "properties": {"allowed": {"type": "boolean"}},
        "additionalProperties": False,
    },
}
GENERIC_SUCCESS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}

ERRORS = {
    400: "The body is not JSON or not an object, a field is missing, of the wrong type or out of range, or the URL is refused; the error names which.",
    401: "The workspace holds a token and the request did not carry it (missing or invalid workspace auth token).",
    404: "The workspace was never registered: register again.",
    410: "The workspace is removed: nothing was changed.",
    413: "The body is over the size limit.",
    503: "Postgres is unreachable; retry after Retry-After seconds.",
}
# Register creates the workspace, so it has no 404; check-access answers
# {"allowed": false} for an unknown workspace, as the seed did.
NO_404 = {"/registry/register", "/registry/check-access"}

# What the read routes answer beside (or instead of) the common ones.
READS = {"/registry/discover/{id}", "/registry/{id}/peers"}
READ_ERRORS: dict[str, dict[int, str]] = {
    "/registry/discover/{id}": {
        400: "No X-Workspace-ID header, or it or the path's id is not a UUID; the error names which.",
        401: "The caller (X-Workspace-ID) holds a token and the request did not carry it.",
        403: "The org hierarchy does not let the caller reach this workspace (not authorized to discover this workspace).",
        404: "No such workspace (workspace not found).",
        410: "The caller is removed.",
        503: "Postgres is unreachable (with Retry-After), or the workspace is not available ({error, status}), "
        "or its URL failed the URL guard's check at read time.",
    },
    "/registry/{id}/peers": {
        400: "The path's id is not a UUID.",
        401: "The workspace holds a token and the request did not carry it.",
        404: "No such workspace (workspace not found).",
        410: "The workspace is removed.",
        503: "Postgres is unreachable; retry after Retry-After seconds.",
    },
}
CACHE_HEADERS = {
    "ETag": {"description": "A hash of the answer; send it back in If-None-Match.", "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "private, max-age=DISCOVERY_MAX_AGE_SECONDS", "required": True, "schema": {"type": "string"}},
    "Vary": {"description": "The request headers the answer depends on.", "required": True, "schema": {"type": "string"}},
}
ID_PARAMETER_DESCRIPTION = "A workspace id (UUID)."

# What the handlers refuse (400, 413) that a JSON Schema of the payload
# cannot say, or not everywhere: agent cards are free-form.
BODY_RULES = (
    "Beyond the schema: strings (keys included, also inside agent_card) must not contain NUL characters "
    "or unpaired UTF-16 surrogates; numbers must be finite; integer fields take JSON integers "
    "(0, not 0.0 or 0e0); JSON null in an optional field means not sent; the body nests at most 32 levels; "
    "a body over the size limit (64 KiB by default) is refused with 413 before it is parsed; "
    "http(s) URLs are checked by the URL guard (400 with the reason)."
)

# Workspace ids are checked by a validator (registry.models._workspace_id),
# which pydantic cannot put in the JSON Schema: the pattern says it.
WORKSPACE_ID_FIELDS = {"id", "workspace_id", "caller_id", "target_id"}
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# pydantic writes a constraint placed after a BeforeValidator in
# Annotated[...] under its Python name (ge/le/gt/lt); JSON Schema and
# Swagger UI only know these.
_KEYWORDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _standard(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _KEYWORDS and node.get("type") in ("number", "integer") and isinstance(value, (int, float)):
                out[_KEYWORDS[key]] = value
            else:
                out[key] = _standard(value)
        return out
    if isinstance(node, list):
        return [_standard(item) for item in node]
    return node


def _models_within(models: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """The models and every model their fields nest (RuntimeMetadata)."""
    found: list[type[BaseModel]] = []
    todo = list(models)
    while todo:
        model = todo.pop()
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                kind = stack.pop()
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    todo.append(kind)
                stack.extend(typing.get_args(kind))
    return found


def takes_null(model: type[BaseModel], name: str) -> bool:
    """Whether an optional field accepts JSON null, asked of the field's own
    validator: the handlers treat null as "not sent" (a BeforeValidator turns
    it into the default), which the JSON Schema pydantic writes does not say."""
    field = model.model_fields[name]
    if field.is_required():
        return False
    kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    try:
        TypeAdapter(kind).validate_json("null")
    except ValidationError:
        return False
    return True


def _allow_null(schemas: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Declare null on the optional fields that take it (type: [T, "null"])."""
    for model in _models_within(models):
        properties = schemas.get(model.__name__, {}).get("properties", {})
        for name, prop in properties.items():
            if isinstance(prop.get("type"), str) and prop["type"] != "null" and takes_null(model, name):
                prop["type"] = [prop["type"], "null"]


def request_model(function: Function) -> type[BaseModel] | None:
    """The payload model a function parses its body with: the one model it
    imports from registry.models (thin handlers import exactly one)."""
    found = [
        value
        for value in vars(function.module).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == "registry.models"
    ]
    payloads = [m for m in found if m.__name__.endswith("Payload")] or found
    return payloads[0] if len(payloads) == 1 else None


def _error(description: str, status: int, schema: dict[str, Any] = ERROR) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if status == 503:
        answer["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    return answer


def _responses(route: Route) -> dict[str, Any]:
    success = SUCCESS.get(route.resource, GENERIC_SUCCESS)
    ok: dict[str, Any] = {"description": "Done.", "content": {"application/json": {"schema": success}}}
    responses: dict[str, Any] = {"200": ok}
    if route.resource in READS:
        ok["headers"] = CACHE_HEADERS
        responses["304"] = {"description": "If-None-Match named the answer's ETag: no body.", "headers": CACHE_HEADERS}
        for status, description in READ_ERRORS[route.resource].items():
            unavailable = status == 503 and route.resource == "/registry/discover/{id}"
            responses[str(status)] = _error(description, status, {"$ref": "#/components/schemas/Unavailable"} if unavailable else ERROR)
        return responses
    for status, description in ERRORS.items():
        if status == 404 and route.resource in NO_404:
            continue
        responses[str(status)] = _error(description, status)
    return responses


def _parameters(route: Route) -> list[dict[str, Any]]:
    params = [
        {
            "name": p.strip("{}"),
            "in": "path",
            "required": True,
            "description": ID_PARAMETER_DESCRIPTION,
            "schema": {"type": "string", "pattern": UUID_PATTERN},
        }
        for p in route.resource.split("/")
        if p.startswith("{")
    ]
    if route.resource == "/registry/discover/{id}":
        params.append(
            {
                "name": "X-Workspace-ID",
                "in": "header",
                "required": True,
                "description": "The calling workspace; the bearer token must be its own.",
                "schema": {"type": "string", "pattern": UUID_PATTERN},
            }
        )
    if route.resource == "/registry/{id}/peers":
        params.append(
            {
                "name": "q",
                "in": "query",
                "required": False,
                "description": "Only peers whose name or role contains this text, case-insensitively (blank: all).",
                "schema": {"type": "string"},
            }
        )
    if route.resource in READS:
        params.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "An ETag of an earlier answer: 304 without a body when the answer is unchanged.",
                "schema": {"type": "string"},
            }
        )
    return params


def _operation(route: Route, model: type[BaseModel] | None, refs: dict) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{route.function.name}_{route.method.lower()}",
        "summary": route.function.summary or f"{route.method} {route.resource}",
        "description": f"Served by functions/{route.function.name}/app.py. Unknown request fields are ignored.",
        # Optional: a first registration and a legacy workspace have no token yet.
        "security": [{}, {"workspaceToken": []}],
        "responses": _responses(route),
    }
    if route.method in ("POST", "PUT", "PATCH"):
        schema = refs[model] if model is not None else {"type": "object"}
        operation["requestBody"] = {"required": True, "description": BODY_RULES, "content": {"application/json": {"schema": schema}}}
    params = _parameters(route)
    if params:
        operation["parameters"] = params
    return operation


READ_SCHEMAS: dict[str, Any] = {
    "DiscoverAnswer": {
        "type": "object",
        "description": "Where the workspace can be reached from the caller (the seed's shape).",
        "required": ["id", "url", "name"],
        "properties": {
            "id": {"type": "string", "description": "The workspace answered for (where forwarded_to led)."},
            "url": {"type": "string"},
            "name": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "Peer": {
        "type": "object",
        "required": ["id", "name", "role", "tier", "status", "url", "parent_id", "active_tasks", "agent_card"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": ["string", "null"], "description": "null when empty"},
            "tier": {"type": ["integer", "null"]},
            "status": {"type": "string"},
            "url": {"type": "string", "description": "'' when none, or when the guard refuses the stored address"},
            "parent_id": {"type": ["string", "null"]},
            "active_tasks": {"type": "integer"},
            "agent_card": {"description": "The card as stored; null when none."},
        },
        "additionalProperties": False,
    },
    "Unavailable": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "The reason, for a human."},
            "status": {"type": ["string", "null"], "description": "The workspace's status, when it is not available."},
        },
    },
}


# --- The operators' read routes (GET /admin/..., registry/fleet.py) ------
#
# No payload model: their input is the query string, read by registry.query
# with the rules below (unknown names and repeated differing values are
# refused; an empty value counts as not given), and their answers are the
# shapes fleet.py builds. The patterns admit the empty value for that reason.

_STATUS = "(provisioning|online|offline|degraded|failed|removed|paused|hibernated)"
_TEXT = {"type": "string"}
_NTEXT = {"type": ["string", "null"]}
_NINT = {"type": ["integer", "null"]}
_STAMP = {"type": "string", "description": "UTC, ISO 8601."}
_NSTAMP = {"type": ["string", "null"], "description": "UTC, ISO 8601."}
_ANY = {"description": "JSON as stored."}


def _query(name: str, schema: dict, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _limit(default: int, highest: int) -> dict[str, Any]:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": highest, "default": default}, f"Items per page, 1 to {highest}.")


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties}


_WORKSPACE_FIELDS = {
    "id": {"type": "string", "pattern": UUID_PATTERN},
    "name": _NTEXT,
    "role": _NTEXT,
    "tier": _NINT,
    "status": _NTEXT,
    "url": _NTEXT,
    "parent_id": _NTEXT,
    "last_heartbeat_at": _NSTAMP,
    "last_error_rate": {"type": ["number", "null"]},
    "last_sample_error": _NTEXT,
    "active_tasks": _NINT,
    "max_concurrent_tasks": _NINT,
    "current_task": _NTEXT,
    "uptime_seconds": _NINT,
    "monthly_spend": _NINT,
    "budget_limit": _NINT,
    "revision": {"type": ["integer", "null"], "description": "The workspace's sequence: its latest event's."},
    "updated_at": _NSTAMP,
}
LISTED = _obj(
    {
        **_WORKSPACE_FIELDS,
        "card_name": _NTEXT,
        "card_version": _NTEXT,
        "skills": {"type": "array", "items": _TEXT, "description": "The card's first 20 skill ids."},
        "created_at": _STAMP,
        "changed_at": {"type": "string", "description": "When the status, card, name or role last changed (UTC)."},
    }
)
RECENT_EVENT = _obj(
    {
        "event_id": _TEXT,
        "event_type": _TEXT,
        "sequence": _NINT,
        "occurred_at": _NSTAMP,
        "payload": {"description": "null past the page's byte budget (the newest event always has it)."},
        "pending": {"type": "boolean", "description": "Recorded, not yet published on EventBridge."},
    }
)
_REDIS_KEY = _obj({"key": _TEXT, "value": _NTEXT, "ttl_seconds": {"type": ["number", "null"]}})
DETAIL = _obj(
    {
        "workspace": _obj(
            {
                **_WORKSPACE_FIELDS,
                "created_at": _NSTAMP,
                "forwarded_to": _NTEXT,
                "agent_card": {"description": "The agent card as stored (null when over 1 MB: see agent_card_bytes)."},
                "agent_card_bytes": _NINT,
                "registration_secret_set": {"type": "boolean", "description": "Whether a one-time registration secret waits (never the secret)."},
                "live_tokens": {
                    "type": "array",
                    "items": _obj({"prefix": _TEXT, "created_at": _NSTAMP, "last_used_at": _NSTAMP, "confirmed": {"type": "boolean"}}),
                    "description": "Display prefixes of the live tokens; never a token or its hash.",
                },
            }
        ),
        "redis": {
            "oneOf": [
                _obj({"available": {"const": False}}),
                _obj(
                    {
                        "available": {"const": True},
                        "liveness": _REDIS_KEY,
                        "url": _REDIS_KEY,
                        "internal_url": _REDIS_KEY,
                        "runtime": _obj({"key": _TEXT, "fields": {"type": "object"}, "ttl_seconds": {"type": ["number", "null"]}}),
                    }
                ),
            ]
        },
        "recent_events": {"type": "array", "items": RECENT_EVENT},
    }
)
FEED_EVENT = _obj(
    {
        "cursor": {"type": "string", "description": "Resume after this event: pass it as after."},
        "event_id": _TEXT,
        "event_type": _TEXT,
        "workspace_id": _NTEXT,
        "sequence": _NINT,
        "occurred_at": _STAMP,
        "payload": _ANY,
        "pending": {"type": "boolean"},
        "published_at": _NSTAMP,
    }
)
_COUNT = _obj({"count": {"type": "integer"}, "estimated": {"type": "boolean"}})
SUMMARY = _obj(
    {
        "workspaces": {"type": "object", "additionalProperties": _COUNT, "description": "Per status: exact up to 10,000, estimated beyond."},
        "fleet": {"type": "integer", "description": "online + degraded"},
        "self_preservation": _obj({"state": _TEXT, "since": _NSTAMP, "last_sweep_at": _NSTAMP}),
        "events": _obj(
            {
                "pending": {"type": "integer"},
                "pending_at_least": {"type": "boolean"},
                "oldest_pending_age_seconds": {"type": ["number", "null"]},
                "cursor": {"type": "string", "description": "The head of the change feed: GET /admin/events?after=<this> returns what happens next."},
            }
        ),
        "liveness_ttl_seconds": {"type": "integer"},
        "generated_at": _STAMP,
    }
)
_OPTIONAL_UUID = {"type": "string", "pattern": f"^$|{UUID_PATTERN}"}

ADMIN: dict[str, dict[str, Any]] = {
    "/admin/workspaces": {
        "parameters": [
            _query(
                "status",
                {"type": "string", "pattern": f"^({_STATUS}(,{_STATUS})*)?$"},
                "One or more statuses, comma-separated. Default: every status but removed.",
            ),
            _query("q", {"type": "string", "maxLength": 200}, "Words of the name, role or card name, each matched as a prefix; all must match."),
            _query("skill", {"type": "string", "maxLength": 200}, "A skill id of the agent card (exact)."),
            _query("tag", {"type": "string", "maxLength": 200}, "A skill tag of the agent card (exact)."),
            _query(
                "updated_since",
                {"type": "string"},
                "The status, card, name or role changed at or after: an ISO 8601 time, or a duration back from now (90s, 15m, 2h, 7d).",
            ),
            _limit(50, 200),
            _query("cursor", {"type": "string", "pattern": r"^(w1\.[A-Za-z0-9_-]+)?$"}, "next_cursor of the previous page."),
        ],
        "answer": _obj({"workspaces": {"type": "array", "items": LISTED}, "next_cursor": _NTEXT}),
        "errors": (400, 403, 503),
    },
    "/admin/workspaces/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": UUID_PATTERN}}],
        "answer": DETAIL,
        "errors": (400, 403, 404, 503),
    },
    "/admin/events": {
        "parameters": [
            _query("after", {"type": "string", "pattern": r"^(e1\.[A-Za-z0-9_-]+)?$"}, "Resume after this cursor (an event's, a page's next_cursor, or the summary's). Default: the start."),
            _query(
                "tail",
                {"type": "integer", "minimum": 1, "maximum": 500},
                "Instead of after: the last this many events (oldest first), and the cursor to follow from.",
            ),
            _query("workspace_id", _OPTIONAL_UUID, "Only this workspace's events."),
            _query("type", {"type": "string", "maxLength": 128}, "Only this event type."),
            _limit(100, 500),
        ],
        "answer": _obj({"events": {"type": "array", "items": FEED_EVENT}, "next_cursor": _TEXT, "has_more": {"type": "boolean"}}),
        "errors": (400, 403, 503),
    },
    "/admin/summary": {"parameters": [], "answer": SUMMARY, "errors": (403, 503)},
}
ADMIN_ERRORS = {
    400: "A query parameter is unknown, repeated with different values, or invalid; the error names it.",
    403: "In AWS: the request is not signed, or not by an identity allowed to invoke the route (API Gateway answers). "
    "Anywhere: the path matches no route (an id holding a '/').",
    404: "No workspace has this id.",
    503: "Postgres is unreachable; retry after Retry-After seconds.",
}
ADMIN_AUTH = (
    "Operators only. In AWS the route uses IAM authorization: sign the request with SigV4 for the execute-api service "
    "(python -m registry.admin does); locally it is open."
)


def _admin_operation(route: Route) -> dict[str, Any]:
    spec = ADMIN[route.resource]
    responses: dict[str, Any] = {"200": {"description": "Done.", "content": {"application/json": {"schema": spec["answer"]}}}}
    for status in spec["errors"]:
        schema = ERROR if status != 403 else {"anyOf": [ERROR, _obj({"message": _TEXT})]}
        responses[str(status)] = _error(ADMIN_ERRORS[status], status, schema)
    operation: dict[str, Any] = {
        "operationId": f"{route.function.name}_{route.method.lower()}",
        "summary": route.function.summary or f"{route.method} {route.path}",
        "description": f"Served by functions/{route.function.name}/app.py. {ADMIN_AUTH}",
        "tags": ["operators"],
        "security": [{}],
        "responses": responses,
    }
    if spec["parameters"]:
        operation["parameters"] = spec["parameters"]
    return operation


def document(functions: list[Function], routes: list[Route], server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the local server serves."""
    models = {f.name: request_model(f) for f in functions}
    unique = sorted({m for m in models.values() if m is not None}, key=lambda m: m.__name__)
    key_map, definitions = models_json_schema([(m, "validation") for m in unique], ref_template="#/components/schemas/{model}")
    refs = {model: key_map[(model, "validation")] for model in unique}
    schemas = _standard(definitions.get("$defs", {}))
    _allow_null(schemas, unique)
    for model in schemas.values():
        for name in WORKSPACE_ID_FIELDS & set(model.get("properties", {})):
            model["properties"][name]["pattern"] = UUID_PATTERN
    schemas.update(READ_SCHEMAS)
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "The reason, for a human."}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.resource in ADMIN:
            operation = _admin_operation(route)
        else:
            operation = _operation(route, models[route.function.name], refs)
        paths.setdefault(route.resource, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "The registry API as `make run` serves it. Generated from the payload models in "
            "layers/shared/registry/models.py; for local use only, never deployed.",
        },
        "servers": [{"url": server_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "workspaceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The auth_token of the workspace's first registration.",
                }
            },
        },
    }


# Swagger UI's files ship inside the Powertools package (it embeds them for
# its own enable_swagger), so the page works offline. The CDN is only a
# fallback for a Powertools version that stops shipping them.
_POWERTOOLS_SWAGGER = Path(__import__("aws_lambda_powertools").__file__).parent / "event_handler" / "openapi" / "swagger_ui"
ASSETS = {
    "swagger-ui-bundle.min.js": ("application/javascript", _POWERTOOLS_SWAGGER / "swagger-ui-bundle.min.js"),
    "swagger-ui.min.css": ("text/css", _POWERTOOLS_SWAGGER / "swagger-ui.min.css"),
}
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"


def asset(name: str) -> tuple[str, bytes] | None:
    entry = ASSETS.get(name)
    if entry is None or not entry[1].is_file():
        return None
    return entry[0], entry[1].read_bytes()


def swagger_page(spec_url: str = "/openapi.json") -> str:
    local = all(path.is_file() for _, path in ASSETS.values())
    css = "/swagger/swagger-ui.min.css" if local else f"{CDN}/swagger-ui.css"
    js = "/swagger/swagger-ui-bundle.min.js" if local else f"{CDN}/swagger-ui-bundle.js"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{TITLE}</title>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{js}"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: {json.dumps(spec_url)}, dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""
