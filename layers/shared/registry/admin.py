"""The operators' command line: ``python -m registry.admin COMMAND``.

    python -m registry.admin summary
    python -m registry.admin workspaces --status degraded
    python -m registry.admin workspaces -q research --skill summarize --all
    python -m registry.admin workspace 3f2504e0-4f89-41d3-9a0c-0305e82c3301
    python -m registry.admin events --follow          # the last 10, then as they happen
    python -m registry.admin --json events --type WORKSPACE_OFFLINE --after e1....

It reads the GET /admin/... routes (registry/fleet.py). ``--url`` (or
``$ADMIN_API_URL``) says where: by default the local registry of ``make run``
(http://127.0.0.1:$PORT, PORT 3000), which is open; a deployed stack's
``ApiUrl`` output (https://<id>.execute-api.<region>.amazonaws.com/<stage>),
where the routes need IAM, is called with requests signed with SigV4 by
botocore, with the standard AWS credentials chain (environment, profile,
SSO, instance or container role; ``--profile`` picks a profile). A custom
domain name in front of the API: add ``--sign --region REGION``.

Tables for people, ``--json`` for scripts: the API's answers as they are
(``events --follow --json`` prints one event per line). Exit status 0 on
success, 1 when the registry refused or could not be reached (the reason
on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

USER_AGENT = "registry-admin/1.0"
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# The statuses as people read them: the live ones first.
DISPLAY_ORDER = ("online", "degraded", "offline", "provisioning", "failed", "paused", "hibernated", "removed")
COLOURS = {
    "online": "32",  # green
    "degraded": "33",  # yellow
    "offline": "90",  # grey
    "failed": "31",  # red
    "provisioning": "36",  # cyan
    "paused": "35",  # magenta
    "hibernated": "35",
    "removed": "2",  # dim
}


class Failure(Exception):
    """The registry refused, or could not be reached: exit status 1."""


# ------------------------------------------------------------------ HTTP


class Client:
    """GET requests to the admin routes, signed with SigV4 when needed."""

    def __init__(self, base_url: str, *, sign: bool | None = None, region: str | None = None, profile: str | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        found = _REGION_IN_HOST.search(host)
        self.sign = bool(found) if sign is None else sign
        self.region = region or (found.group(1) if found else None)
        self.profile = profile
        self.timeout = timeout
        self._credentials = None

    def _signed_headers(self, url: str) -> dict[str, str]:
        # botocore only when signing: a local run needs no AWS library.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError
        from botocore.session import Session

        try:
            if self._credentials is None:
                session = Session(profile=self.profile)
                credentials = session.get_credentials()
                if credentials is None:
                    raise Failure("no AWS credentials found (environment, ~/.aws, SSO or a role); the admin routes need IAM")
                self._credentials = credentials
                self.region = self.region or session.get_config_variable("region")
            if not self.region:
                raise Failure("no AWS region: pass --region (needed to sign for a custom domain name)")
            request = AWSRequest(method="GET", url=url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
            # Refreshable credentials (SSO, roles) are frozen per request.
            SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        except BotoCoreError as err:
            raise Failure(f"cannot sign the request: {err}") from None
        return dict(request.headers.items())

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None}, quote_via=urllib.parse.quote)
        url = self.base_url + path + (f"?{query}" if query else "")
        headers = self._signed_headers(url) if self.sign else {"Accept": "application/json", "User-Agent": USER_AGENT}
        request = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise Failure(f"{err.code} {_reason(err)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            why = getattr(err, "reason", err)
            raise Failure(f"cannot reach {self.base_url}: {why}") from None
        except ValueError:
            raise Failure(f"{url} did not answer JSON; is --url the registry's API?") from None


def _reason(err: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(err.read().decode("utf-8"))
    except (ValueError, OSError):
        return err.reason or "error"
    # The registry says {"error": ...}; API Gateway's own refusals {"message": ...}.
    reason = body.get("error") or body.get("message") or err.reason
    if err.code == 403 and "error" not in body:
        reason += " (API Gateway refused the request: check the credentials, the region and --url)"
    return str(reason)


# --------------------------------------------------------------- output


class Out:
    def __init__(self, stream=None, colour: bool | None = None):
        self.stream = stream or sys.stdout
        if colour is None:
            colour = hasattr(self.stream, "isatty") and self.stream.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.width = shutil.get_terminal_size((160, 24)).columns

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def status(self, status: str | None, width: int = 0) -> str:
        text = (status or "-").ljust(width)
        code = COLOURS.get(status or "")
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def json(self, value: Any, compact: bool = False) -> None:
        if compact:
            self.line(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        else:
            self.line(json.dumps(value, indent=2, ensure_ascii=False))

    def table(self, headers: list[str], rows: list[list[str]], statuses: list[str | None] | None = None) -> None:
        """Columns as wide as their content; the last one cut to the terminal."""
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
        widths[-1] = max(len(headers[-1]), min(widths[-1], self.width - fixed))
        self.line("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        for n, row in enumerate(rows):
            cells = [_cut(cell, w).ljust(w) for cell, w in zip(row, widths)]
            if statuses is not None:
                cells[0] = self.status(statuses[n], widths[0])
            self.line("  ".join(cells).rstrip())


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _when(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def ago(stamp: str | None, now: datetime | None = None) -> str:
    when = _when(stamp)
    if when is None:
        return "never"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _short_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True) if value is not None else ""


# ------------------------------------------------------------- commands


def cmd_summary(client: Client, args, out: Out) -> None:
    body = client.get("/admin/summary")
    if args.json:
        out.json(body)
        return
    counts = body["workspaces"]
    parts = []
    for status, count in sorted(counts.items(), key=lambda kv: DISPLAY_ORDER.index(kv[0]) if kv[0] in DISPLAY_ORDER else 99):
        number = f"{'~' if count['estimated'] else ''}{count['count']}"
        parts.append(f"{out.status(status)} {number}")
    out.line("workspaces         " + "  ".join(parts))
    out.line(f"fleet              {body['fleet']} (online + degraded), silent after {body['liveness_ttl_seconds']} s")
    sp = body["self_preservation"]
    since = f" since {sp['since']}" if sp["since"] else ""
    out.line(f"self-preservation  {sp['state']}{since}; last sweep {ago(sp['last_sweep_at'])}")
    ev = body["events"]
    pending = f"{ev['pending']}{'+' if ev['pending_at_least'] else ''} pending"
    if ev["oldest_pending_age_seconds"] is not None:
        pending += f", oldest {ev['oldest_pending_age_seconds']:.0f} s"
    out.line(f"events             {pending}")
    out.line(f"feed head          {ev['cursor']}   (events --after this cursor: what happens next)")


def _workspace_params(args) -> dict[str, Any]:
    return {
        "status": args.status,
        "q": args.q,
        "skill": args.skill,
        "tag": args.tag,
        "updated_since": args.updated_since,
        "limit": args.limit,
        "cursor": args.cursor,
    }


def cmd_workspaces(client: Client, args, out: Out) -> None:
    params = _workspace_params(args)
    found: list[dict] = []
    while True:
        page = client.get("/admin/workspaces", params)
        found += page["workspaces"]
        params["cursor"] = page["next_cursor"]
        if not (args.all and page["next_cursor"]):
            break
    if args.json:
        out.json({"workspaces": found, "next_cursor": page["next_cursor"]})
        return
    if not found:
        out.line("no workspaces match")
        return
    now = datetime.now(UTC)
    rows = []
    for w in found:
        rows.append(
            [
                w["status"] or "-",
                w["card_name"] or w["name"] or "",
                w["id"],
                f"{w['active_tasks'] or 0}/{w['max_concurrent_tasks'] or 1}",
                ago(w["last_heartbeat_at"], now),
                f"{w['last_error_rate'] or 0:.2f}",
                ",".join(w["skills"]) or "-",
                (w["last_sample_error"] or w["current_task"] or ""),
            ]
        )
    out.table(
        ["STATUS", "NAME", "ID", "TASKS", "HEARTBEAT", "ERRORS", "SKILLS", "CURRENT TASK / LAST ERROR"],
        rows,
        [w["status"] for w in found],
    )
    if page["next_cursor"]:
        out.line(f"\nmore: add --cursor {page['next_cursor']}   (or --all)")


def cmd_workspace(client: Client, args, out: Out) -> None:
    body = client.get(f"/admin/workspaces/{urllib.parse.quote(args.id, safe='')}")
    if args.json:
        out.json(body)
        return
    w = body["workspace"]
    card = w["agent_card"] if isinstance(w["agent_card"], dict) else {}
    fields = [
        ("id", w["id"]),
        ("name", f"{card.get('name') or w['name']}" + (f"   (card version {card['version']})" if card.get("version") else "")),
        ("status", out.status(w["status"])),
        ("url", w["url"] or "-"),
        ("role / tier", f"{w['role'] or '-'} / {w['tier'] if w['tier'] is not None else '-'}"),
        ("parent", w["parent_id"] or "-"),
        ("last heartbeat", f"{ago(w['last_heartbeat_at'])}   ({w['last_heartbeat_at'] or 'never'})"),
        ("tasks", f"{w['active_tasks'] or 0} of {w['max_concurrent_tasks'] or 1}; current: {w['current_task'] or '-'}"),
        ("error rate", f"{w['last_error_rate'] or 0:.2f}; last error: {w['last_sample_error'] or '-'}"),
        ("uptime", f"{w['uptime_seconds'] or 0} s"),
        ("spend", f"{w['monthly_spend'] or 0} cents this month" + (f" of {w['budget_limit']}" if w["budget_limit"] is not None else "")),
        ("sequence", str(w["revision"])),
        ("registered", w["created_at"] or "-"),
        ("tokens", ", ".join(f"{t['prefix']}... ({'confirmed' if t['confirmed'] else 'unconfirmed'})" for t in w["live_tokens"]) or "none"),
        ("registration secret", "set (one-time, unused)" if w["registration_secret_set"] else "none"),
    ]
    redis = body["redis"]
    if redis.get("available"):
        live = redis["liveness"]
        fields.append(("liveness key", f"{live['key']} = {live['value']}, expires in {live['ttl_seconds']} s" if live["value"] else f"{live['key']} absent"))
        runtime = redis["runtime"]["fields"]
        overrides = {k: v for k, v in runtime.items() if k != "last_heartbeat_at"}
        fields.append(("runtime overrides", _short_json(overrides) if overrides else "none"))
    else:
        fields.append(("redis", "unavailable"))
    skills = [s.get("id") for s in card.get("skills", []) if isinstance(s, dict)] if isinstance(card.get("skills"), list) else []
    fields.append(("skills", ", ".join(str(s) for s in skills) or "-"))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        out.line(f"{key.ljust(width)}  {value}")
    out.line("")
    out.line("recent events (newest first)")
    _events_table(out, body["recent_events"], with_workspace=False)
    out.line("")
    out.line("agent card")
    out.json(w["agent_card"])


def _events_table(out: Out, events: list[dict], with_workspace: bool = True) -> None:
    if not events:
        out.line("  none")
        return
    rows = []
    for e in events:
        at = _when(e["occurred_at"])
        row = [e["event_type"], at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at else "-"]
        if with_workspace:
            row.append(e.get("workspace_id") or "-")
        row += [str(e["sequence"]) if e["sequence"] is not None else "-", _short_json(e["payload"])]
        rows.append(row)
    headers = ["TYPE", "TIME"] + (["WORKSPACE"] if with_workspace else []) + ["SEQ", "PAYLOAD"]
    out.table(headers, rows)


def cmd_events(client: Client, args, out: Out) -> None:
    after = args.after
    tail = args.tail
    if tail is None and args.follow and after is None:
        tail = 10  # like tail -f: some context, then what happens next
    if tail is not None and after is not None:
        raise Failure("--tail and --after: give one of them")
    printed_header = False
    while True:
        if tail is not None:
            page = client.get("/admin/events", {"tail": tail, "workspace_id": args.workspace, "type": args.type})
            tail = None
        else:
            page = client.get("/admin/events", {"after": after, "workspace_id": args.workspace, "type": args.type, "limit": args.limit})
        after = page["next_cursor"]
        if args.json:
            if args.follow:
                for event in page["events"]:
                    out.json(event, compact=True)
            else:
                out.json(page)
        elif page["events"]:
            if args.follow:
                for e in page["events"]:
                    at = _when(e["occurred_at"])
                    stamp = at.astimezone().strftime("%H:%M:%S.%f")[:-3] if at else "-"
                    ws = e.get("workspace_id") or "-"
                    out.line(_cut(f"{stamp}  {e['event_type']:<22} {ws}  #{e['sequence'] if e['sequence'] is not None else '-'}  {_short_json(e['payload'])}", out.width))
            else:
                _events_table(out, page["events"])
                printed_header = True
        if not args.follow:
            if not args.json:
                if not printed_header:
                    out.line("no events after this cursor")
                out.line(f"\n{'more' if page['has_more'] else 'resume'}: --after {after}")
            return
        if not page["has_more"]:
            time.sleep(args.interval)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given before or after the command, the value is kept.
    common.add_argument("--url", default=argparse.SUPPRESS, help="the registry's API (default $ADMIN_API_URL or http://127.0.0.1:$PORT, PORT 3000)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the API's JSON answer instead of a table")
    common.add_argument("--sign", action="store_true", default=argparse.SUPPRESS, help="sign with SigV4 (automatic for *.execute-api.*.amazonaws.com)")
    common.add_argument("--no-sign", dest="sign", action="store_false", default=argparse.SUPPRESS, help="never sign")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region to sign for (default: from the URL or the AWS configuration)")
    common.add_argument("--profile", default=argparse.SUPPRESS, help="AWS profile for the credentials")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request (default 10)")

    parser = argparse.ArgumentParser(
        prog="python -m registry.admin",
        parents=[common],
        description="Read the workspace registry's fleet: summary, workspaces, one workspace, the change feed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("summary", parents=[common], help="counts by status, self-preservation, event backlog")

    ws = commands.add_parser("workspaces", parents=[common], help="list workspaces, newest first")
    ws.add_argument("--status", help="one or more statuses, comma-separated (default: all but removed)")
    ws.add_argument("-q", "--query", dest="q", help="words of the name, role or card name (prefixes)")
    ws.add_argument("--skill", help="a skill id of the agent card (exact)")
    ws.add_argument("--tag", help="a skill tag of the agent card (exact)")
    ws.add_argument("--updated-since", help="status or card changed since: ISO time or 15m, 2h, 7d")
    ws.add_argument("--limit", type=int, help="per page (default 50, at most 200)")
    ws.add_argument("--cursor", help="the page after this cursor (printed under a page)")
    ws.add_argument("--all", action="store_true", help="every page")

    one = commands.add_parser("workspace", parents=[common], help="one workspace: record, Redis, recent events, card")
    one.add_argument("id", help="the workspace id (a UUID)")

    ev = commands.add_parser("events", parents=[common], help="the change feed, oldest first; --tail, --follow")
    ev.add_argument("--workspace", help="only this workspace's events")
    ev.add_argument("--type", help="only this event type, e.g. WORKSPACE_DEGRADED")
    ev.add_argument("--after", help="resume after this cursor (default: the start)")
    ev.add_argument("--tail", type=int, help="the last N events instead (--follow starts with the last 10)")
    ev.add_argument("--limit", type=int, help="per request (default 100, at most 500)")
    ev.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    ev.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow (default 2)")

    args = parser.parse_args(argv)
    defaults = {
        "url": os.environ.get("ADMIN_API_URL") or f"http://127.0.0.1:{os.environ.get('PORT') or 3000}",
        "json": False,
        "sign": None,
        "region": None,
        "profile": None,
        "timeout": 10.0,
    }
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


COMMANDS = {"summary": cmd_summary, "workspaces": cmd_workspaces, "workspace": cmd_workspace, "events": cmd_events}


def main(argv: list[str] | None = None, out: Out | None = None) -> int:
    args = parse_args(argv)
    out = out or Out()
    client = Client(args.url, sign=args.sign, region=args.region, profile=args.profile, timeout=args.timeout)
    try:
        COMMANDS[args.command](client, args, out)
    except Failure as err:
        print(f"registry.admin: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # | head
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
