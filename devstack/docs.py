"""The parts of docs/ that are generated from the code, so they cannot drift:

- docs/api.md, "routes": every route of every function, from the OpenAPI
  document the local API serves (devstack/openapi.py);
- docs/configuration.md, "settings": every environment variable the layer
  reads, from registry.settings.VARIABLES;
- docs/deploy.md, "parameters": the template's parameters, from their own
  descriptions in template.yaml.

    python -m devstack.docs          # rewrite the generated blocks
    python -m devstack.docs --check  # exit 1 if a block is out of date (tests/test_docs.py)

A block is the text between ``<!-- generated: NAME (...) -->`` and
``<!-- end generated: NAME -->``; everything around it is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys

from devstack import functions as fn
from devstack.harness import REPO

DOCS = REPO / "docs"


def routes_table() -> str:
    from devstack import openapi

    functions = fn.discover()
    routes = fn.route_table(functions)
    document = openapi.document(functions, routes, "http://127.0.0.1:3000")
    rows = ["| route | function | what it does | answers |", "|---|---|---|---|"]
    owner = {(r.method, r.resource): r.function.name for r in routes}
    for path in sorted(document["paths"], key=lambda p: (not p.startswith("/registry"), p)):
        for method, operation in document["paths"][path].items():
            codes = ", ".join(sorted(operation.get("responses", {})))
            summary = (operation.get("summary") or "").rstrip(".")
            rows.append(f"| `{method.upper()} {path}` | `functions/{owner[(method.upper(), path)]}` | {summary} | {codes} |")
    return "\n".join(rows)


def settings_table() -> str:
    from registry import settings

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for variable in settings.VARIABLES:
        value = variable.default
        default = "unset" if value in (None, "") else f"`{str(value).lower() if isinstance(value, bool) else value}`"
        rows.append(f"| `{variable.name}` | {default} | {variable.meaning} |")
    return "\n".join(rows)


def parameters_table() -> str:
    """The template's parameters, with their defaults and descriptions."""
    import json

    from cfnlint.decode import decode

    template, errors = decode(str(REPO / "template.yaml"))
    if errors:
        raise ValueError(f"template.yaml does not parse: {errors[0]}")
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for name, spec in json.loads(json.dumps(template))["Parameters"].items():
        default = spec.get("Default")
        shown = "empty" if default in ("", None) else f"`{default}`"
        rows.append(f"| `{name}` | {shown} | {spec.get('Description', '').replace('|', '/')} |")
    return "\n".join(rows)


BLOCKS = {
    ("api.md", "routes"): routes_table,
    ("configuration.md", "settings"): settings_table,
    ("deploy.md", "parameters"): parameters_table,
}


def render(text: str, name: str, content: str) -> str:
    pattern = re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end generated: {name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated block named {name!r}")
    return pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(3), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report blocks that are out of date instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for (page, name), make in BLOCKS.items():
        path = DOCS / page
        text = path.read_text()
        new = render(text, name, make())
        if new != text:
            stale.append(f"docs/{page} ({name})")
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("out of date, run python -m devstack.docs: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
