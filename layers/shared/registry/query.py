"""Query-string parameters of the read routes (GET /admin/...), read
strictly: a name the route does not know is refused (a typo such as
``stauts=degraded`` must not silently list everything), a name repeated
with different values is refused, an empty text value counts as not given
(an empty search box) while an empty number is refused, and text that
Postgres cannot store (NUL, unpaired surrogates) is refused before it
reaches SQL.

Both API Gateway payload formats: REST events list repeats in
``multiValueQueryStringParameters``; HTTP API (2.0) events join them with
commas in ``queryStringParameters``, which the list-valued parameters
(``status=degraded,offline``) read the same way.
"""

from __future__ import annotations

from registry.api import ApiError


def params(event: dict, known: tuple[str, ...]) -> dict[str, str]:
    """The route's parameters by name (read them with the helpers below)."""
    values: dict[str, set[str]] = {}
    for name, value in (event.get("queryStringParameters") or {}).items():
        if value is not None:
            values.setdefault(name, set()).add(value)
    for name, repeated in (event.get("multiValueQueryStringParameters") or {}).items():
        values.setdefault(name, set()).update(v for v in repeated or [] if v is not None)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}; this route takes {', '.join(known)}")
    found: dict[str, str] = {}
    for name, given in values.items():
        if len(given) > 1:
            raise ApiError(400, f"query parameter {name!r} is repeated with different values")
        value = given.pop() if given else ""
        if "\x00" in value:
            raise ApiError(400, f"{name}: contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{name}: contains an unpaired UTF-16 surrogate") from None
        found[name] = value
    return found


def given(found: dict[str, str], name: str) -> str | None:
    """A text parameter; empty is the same as absent."""
    return found.get(name) or None


def integer(found: dict[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    raw = found.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.strip().isdigit() or len(raw.strip()) > 9:
        raise ApiError(400, f"{name}: must be a whole number from {lowest} to {highest}")
    value = int(raw)
    if not lowest <= value <= highest:
        raise ApiError(400, f"{name}: must be a whole number from {lowest} to {highest}")
    return value


def text(found: dict[str, str], name: str, longest: int) -> str | None:
    value = given(found, name)
    if value is not None and len(value) > longest:
        raise ApiError(400, f"{name}: at most {longest} characters")
    return value
