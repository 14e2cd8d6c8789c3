"""``make run``: the registry on localhost, no Docker, no AWS account.

    python -m devstack.local [--port 3000] [--state-dir .registry] [--fresh] [--http-api]

Starts embedded Postgres and Redis (or uses DATABASE_URL / REDIS_URL),
applies the migrations, starts a local EventBridge (moto) with the bus and
a catch-all rule, and serves every route of every functions/*/app.py on
http://127.0.0.1:PORT. Each request becomes the API Gateway REST proxy
event the deployed API would send (with --http-api, the HTTP API's payload
format 2.0 event, as ApiType=HTTP deploys), goes to the same
lambda_handler, and the function's status, headers and body go back as
they are.

The console shows where everything is, then every request and every event
published on the bus. Ctrl-C stops everything this started. Data lives in
the state folder and survives a restart; --fresh starts over.

HTTP is werkzeug's threaded server with the checks it lacks
(devstack/httpserver.py). Each function runs on a worker thread of its own,
like one warm Lambda container per function: different functions run at the
same time, one function runs one invocation at a time (Powertools resolvers
and the layer's per-thread connections are not meant to be shared between
concurrent requests).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack import functions as fn
from devstack import harness, httpserver

REPO = harness.REPO
DEFAULT_PORT = 3000
DEFAULT_STATE_DIR = REPO / ".registry"
DEFAULT_SWEEP_INTERVAL = 15
# Locally a silent agent should go offline within a minute or so, so the
# runner uses two missed 30 s heartbeats; AWS keeps DESIGN.md's 180 s.
LOCAL_LIVENESS_TTL_SECONDS = 60
# API Gateway's own limits: 10 MB payloads, 29 s integration time-out.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_SECONDS = 29
# The fixed loopback ports of --sam; events/env.json names the same ones.
SAM_PORTS = {"postgres": 54320, "redis": 63790, "events": 4010}

LOCK_FILE = "run.lock"
INFO_FILE = "run.json"


# --------------------------------------------------------------------- console


class Console:
    """Line-at-a-time output shared by the HTTP, event and sweep threads."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def line(self, text: str = "") -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    @staticmethod
    def now() -> str:
        return datetime.now().strftime("%H:%M:%S.%f")[:-3]

    def http(self, method: str, path: str, status: int, millis: float, reason: str | None) -> None:
        why = f"  {reason}" if reason else ""
        self.line(f"{self.now()}  http   {method} {path} {status} ({millis:.0f} ms){why}")

    def event(self, envelope: dict[str, Any]) -> None:
        detail = envelope.get("detail")
        if isinstance(detail, str):
            try:
                detail = json.loads(detail)
            except ValueError:
                detail = {"raw": detail}
        detail = detail if isinstance(detail, dict) else {}
        payload = detail.get("payload", detail)
        short = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(short) > 110:
            short = short[:107] + "..."
        at = _local_time(detail.get("occurred_at") or envelope.get("time"))
        kind = envelope.get("detail-type", "?")
        if envelope.get("source") not in (None, "workspace-registry"):
            kind = f"{kind} (from {envelope.get('source')})"
        self.line(f"{at}  event  {kind:<20} {detail.get('workspace_id', '-')}  {short}")


def _local_time(stamp: Any) -> str:
    try:
        when = datetime.fromisoformat(str(stamp))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone().strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return Console.now()


# ------------------------------------------------------------ the state folder


class StateLock:
    """One run per state folder: an flock the kernel drops when the process
    dies (so a killed run never blocks the next), plus run.json saying who
    holds it."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self._file = None

    def acquire(self) -> bool:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.close()
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._file = handle
        return True

    def holder(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / INFO_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def publish(self, info: dict[str, Any]) -> None:
        (self.state_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")

    def release(self) -> None:
        (self.state_dir / INFO_FILE).unlink(missing_ok=True)
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _alive(pid: int, names: tuple[str, ...]):
    """The psutil process when pid is running one of these programs."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if any(n in name for n in names) else None


def embedded_pids(state_dir: Path) -> dict[str, int]:
    """Pids of the embedded Postgres and Redis of this state folder, if running."""
    found: dict[str, int] = {}
    try:
        pid = int((state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
        if _alive(pid, ("postgres", "postmaster")):
            found["postgres"] = pid
    except (OSError, ValueError, IndexError):
        pass
    try:
        settings = json.loads((state_dir / "redis" / "redis.rdb.settings").read_text())
        pid = int(Path(settings["pidfile"]).read_text().strip())
        if _alive(pid, ("redis",)):
            found["redis"] = pid
    except (OSError, ValueError, KeyError):
        pass
    return found


def stop_leftovers(state_dir: Path) -> list[str]:
    """Stop servers of this folder that a killed run left behind.

    Called with the lock held, so nothing running here belongs to a live
    run. pgserver keeps the pids of its users in .handle_pids.json and only
    stops the server when the last one leaves; a killed run's pid would stay
    there forever and keep Ctrl-C from stopping Postgres, so it is reset.
    """
    import psutil

    notes = []
    for name, pid in embedded_pids(state_dir).items():
        proc = psutil.Process(pid)
        # SIGINT is Postgres' fast shutdown; SIGTERM is Redis' save-and-exit.
        proc.send_signal(signal.SIGINT if name == "postgres" else signal.SIGTERM)
        try:
            proc.wait(15)
        except psutil.TimeoutExpired:
            proc.kill()
        notes.append(f"stopped {name} (pid {pid}) left running by an earlier run that did not shut down")
    handles = state_dir / "postgres" / ".handle_pids.json"
    if handles.exists():
        handles.write_text("[]")
    return notes


def wipe(state_dir: Path) -> None:
    for child in state_dir.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# ------------------------------------------------------------------ the server


class Invoker:
    """Runs each function as one warm Lambda container: a worker thread per
    function, so different functions run at the same time while one function
    never runs two invocations at once (its Powertools resolver and the
    layer's per-thread Postgres connection are not meant to be shared).

    The HTTP side and the sweep call ``invoke``.
    """

    def __init__(self):
        self._workers: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self.closed = False

    def _submit(self, worker: str, call, *args) -> concurrent.futures.Future:
        """``call(*args)`` on the named worker thread, after its earlier work."""
        with self._lock:
            if self.closed:
                # The same words as the executor's, which callers look for.
                raise RuntimeError("cannot schedule new futures after shutdown")
            pool = self._workers.get(worker)
            if pool is None:
                pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lambda-{worker}")
                self._workers[worker] = pool
        return pool.submit(call, *args)

    def invoke(self, function: fn.Function, event: dict[str, Any], timeout_seconds: float = 30.0) -> concurrent.futures.Future:
        """The function's answer to ``event``, as a future."""
        return self._submit(function.name, lambda: function.handler(event, harness.LambdaContext(function.name, timeout_seconds)))

    def close(self) -> None:
        with self._lock:
            self.closed = True
            workers = list(self._workers.values())

        def last_call() -> None:
            # Close this thread's connection before the servers stop.
            from registry import db

            db.close()

        for pool in workers:
            with contextlib.suppress(Exception):
                pool.submit(last_call).result(timeout=10)
            pool.shutdown(wait=True, cancel_futures=True)
        from registry import liveness

        liveness.reset()


class Every:
    """Call ``work`` every ``seconds`` in a thread until stopped."""

    def __init__(self, name: str, seconds: float, work):
        self._stop = threading.Event()
        self._seconds = seconds
        self._work = work
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            self._work()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=INTEGRATION_TIMEOUT_SECONDS + 5)


def _json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _reason(status: int, body: bytes) -> str | None:
    if status < 400:
        return None
    try:
        parsed = json.loads(body)
        return str(parsed.get("error") or parsed.get("message") or "")[:160] or None
    except (ValueError, AttributeError):
        return None


DASHBOARD_DIR = Path(__file__).with_name("dashboard")
# The fleet dashboard (local only, like Swagger UI): its page and its two
# files, same origin as the admin routes it reads.
DASHBOARD_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
# Scripts and styles from these files only: an agent card rendered by the
# page can never run as code, even if it slipped past the escaping.
DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
# The header the dashboard sends with its polls: they are not printed on the
# console (one a second would drown the agents' requests); refusals are.
DASHBOARD_HEADER = "x-registry-dashboard"


def _quiet(path: str, headers, status: int) -> bool:
    """Requests the console does not print: the local pages, and the
    dashboard's own successful polls."""
    if path.startswith(("/swagger", "/openapi.json", "/dashboard/")) or path == "/":
        return True
    return status < 400 and any(k.lower() == DASHBOARD_HEADER for k, _ in headers)


class LocalApi:
    """What answers each HTTP request: a function through its proxy event,
    or the local-only OpenAPI document, Swagger UI and fleet dashboard."""

    def __init__(self, functions: list[fn.Function], invoker: Invoker, console: Console, base_url: str, api_format: str = "rest"):
        from devstack import openapi

        self.api_format = api_format  # "rest" or "http": the proxy event each request becomes
        self.functions = functions
        self.routes = fn.route_table(functions)
        self.invoker = invoker
        self.console = console
        self.base_url = base_url
        self.openapi = openapi
        self.document = json.dumps(openapi.document(functions, self.routes, base_url), indent=2).encode()

    def __call__(self, environ: dict[str, Any], start_response):
        """The WSGI application behind devstack.httpserver."""
        request: httpserver.Request = environ[httpserver.REQUEST]
        started = time.monotonic()
        url = urlsplit(request.target)
        path = url.path
        reason = None
        try:
            body = request.body()
        except httpserver.Refused as refusal:
            status, headers = refusal.status, [("Content-Type", "application/json")]
            payload, reason = _json_body({"message": refusal.message}), refusal.console
        else:
            status, headers, payload = self.answer(request.method, path, url.query, request.headers, body, request.client_ip)
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        start_response(_status_line(status), [*headers, ("Content-Length", str(len(payload)))])
        if not _quiet(path, request.headers, status) or reason:
            millis = (time.monotonic() - started) * 1000
            self.console.http(request.method, path, status, millis, reason or _reason(status, payload))
        return [b"" if request.method == "HEAD" else payload]

    def answer(self, method: str, path: str, query: str, headers, body: bytes, source_ip: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if method in ("GET", "HEAD"):
            local = self._local_page(path)
            if local is not None:
                return local
        found = fn.find_route(self.routes, method, path)
        if found is None and self.api_format == "http":
            # What an HTTP API answers for a request no route matches.
            return 404, [("Content-Type", "application/json")], _json_body({"message": "Not Found"})
        if found is None:
            # What a REST API answers for a path or method it has no route for.
            return (
                403,
                [("Content-Type", "application/json"), ("x-amzn-ErrorType", "MissingAuthenticationTokenException")],
                _json_body({"message": "Missing Authentication Token"}),
            )
        route, params = found
        host = next((v for k, v in headers if k.lower() == "host"), urlsplit(self.base_url).netloc)
        request = harness.Request(method, path, query, list(headers), body, source_ip, host)
        event = harness.EVENT_BUILDERS[self.api_format](request, route.resource, params)
        request_id = event["requestContext"]["requestId"]
        if self.invoker.closed:
            return (
                503,
                [("Content-Type", "application/json")],
                _json_body({"message": "Service Unavailable: the local registry is stopping"}),
            )
        try:
            result = self.invoker.invoke(route.function, event).result(timeout=INTEGRATION_TIMEOUT_SECONDS)
            answer = fn.http_answer(result)
        except concurrent.futures.TimeoutError:
            return 504, [("Content-Type", "application/json")], _json_body({"message": "Endpoint request timed out"})
        except RuntimeError as err:  # the invoker is shutting down
            if "shutdown" not in str(err):
                raise
            return (
                503,
                [("Content-Type", "application/json")],
                _json_body({"message": "Service Unavailable: the local registry is stopping"}),
            )
        except Exception:  # noqa: BLE001 - whatever the function raised
            # An exception out of lambda_handler or a malformed result: API
            # Gateway answers 502. Show why here; Lambda would log it.
            self.console.line(f"functions/{route.function.name} failed:\n{traceback.format_exc().rstrip()}")
            return 502, [("Content-Type", "application/json")], _json_body({"message": "Internal server error"})
        return answer.status, answer.headers + [("x-amzn-RequestId", request_id)], answer.body

    def _local_page(self, path: str):
        if path in DASHBOARD_FILES:
            name, kind = DASHBOARD_FILES[path]
            headers = [("Content-Type", kind), ("Cache-Control", "no-cache"), ("Content-Security-Policy", DASHBOARD_CSP), ("X-Content-Type-Options", "nosniff")]
            return 200, headers, (DASHBOARD_DIR / name).read_bytes()
        if path == "/openapi.json":
            return 200, [("Content-Type", "application/json")], self.document
        if path in ("/swagger", "/swagger/"):
            return 200, [("Content-Type", "text/html; charset=utf-8")], self.openapi.swagger_page().encode()
        if path.startswith("/swagger/"):
            found = self.openapi.asset(path.rsplit("/", 1)[1])
            if found is not None:
                return 200, [("Content-Type", found[0]), ("Cache-Control", "max-age=3600")], found[1]
        return None


# ------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make run",
        description="Run the registry on localhost over embedded Postgres, Redis and EventBridge (moto). Ctrl-C stops everything.",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT), help="API port (default $PORT or 3000)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where Postgres and Redis keep their data (default .registry/ in the checkout)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete the state folder's data first and start over")
    parser.add_argument(
        "--sweep-interval",
        type=float,
        default=float(os.environ.get("SWEEP_INTERVAL_SECONDS") or DEFAULT_SWEEP_INTERVAL),
        help=f"seconds between liveness sweeps (default $SWEEP_INTERVAL_SECONDS or {DEFAULT_SWEEP_INTERVAL})",
    )
    parser.add_argument("--logs", action="store_true", help="also show the functions' INFO logs (default: warnings only)")
    parser.add_argument(
        "--http-api",
        action="store_true",
        help="send the functions HTTP API events (payload format 2.0, as ApiType=HTTP deploys) instead of REST API ones",
    )
    parser.add_argument(
        "--sam",
        action="store_true",
        help=f"also expose Postgres, Redis and EventBridge on 127.0.0.1:{SAM_PORTS['postgres']}/{SAM_PORTS['redis']}/{SAM_PORTS['events']} "
        "for sam local invoke --env-vars events/env.json",
    )
    parser.add_argument(
        "--built",
        action="store_true",
        help="serve each request by the built artifact (sam build) under the Lambda runtime client, "
        "not in-process: sam local start-api without Docker (devstack/built.py; needs Python 3.13)",
    )
    parser.add_argument("--functions-dir", type=Path, default=harness.FUNCTIONS_DIR, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _configure_environment(args: argparse.Namespace) -> None:
    """Before any layer module is imported: fake AWS credentials, so nothing
    can reach a real account, and Powertools' output suited to a console."""
    harness.use_aws_env(bus=os.environ.get("EVENT_BUS_NAME") or harness.BUS)
    os.environ.setdefault("LIVENESS_TTL_SECONDS", str(LOCAL_LIVENESS_TTL_SECONDS))
    # The steady heartbeat's safety bound (registry.settings.steady_path_enabled)
    # is checked against the sweep this runner really runs.
    os.environ["SWEEP_INTERVAL_SECONDS"] = str(max(1, round(args.sweep_interval)))
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "workspace-registry")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "WorkspaceRegistryLocal")
    # Metrics would print an EMF blob per request; nothing reads them here.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if args.logs:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO"
    else:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


def _unix_socket_of(url: str, kind: str, state_dir: Path) -> str | None:
    """The Unix socket an embedded server's URL names (None for TCP URLs)."""
    if kind == "redis":
        return urlsplit(url).path if url.startswith("unix://") else None
    host = parse_qs(urlsplit(url).query).get("host", [""])[0]
    if not host.startswith("/"):
        return None
    port = 5432
    with contextlib.suppress(OSError, ValueError, IndexError):
        port = int((state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[3])
    return f"{host}/.s.PGSQL.{port}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    console = Console()
    state_dir = args.state_dir.expanduser().resolve()

    lock = StateLock(state_dir)
    if not lock.acquire():
        holder = lock.holder()
        where = f" (pid {holder['pid']}, API {holder['api']})" if holder.get("pid") else " (still starting)"
        console.line(
            f"make run: the registry is already running on {state_dir}{where}.\n"
            f"Stop it with Ctrl-C in its terminal{' or kill ' + str(holder['pid']) if holder.get('pid') else ''}, "
            'or run a second one elsewhere: make run PORT=3001 ARGS="--state-dir /tmp/registry2".'
        )
        return 1

    # Ctrl-C arrives as KeyboardInterrupt; treat kill and a closed terminal the same.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # Installed explicitly: a job started in the background by a script
    # inherits SIGINT ignored, and Python then would not turn it into
    # KeyboardInterrupt, so `kill -INT` would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    try:
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(lock.release)
            try:
                _run(args, console, lock, state_dir, cleanup)
            except BaseException as err:
                # Before the stack unwinds: a second Ctrl-C must not cut the
                # shutdown short and leave servers running.
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, _stopping(console))
                if isinstance(err, KeyboardInterrupt):
                    console.line("\nstopping everything this run started ...")
                raise
    except KeyboardInterrupt:
        pass
    except _StartupError as err:
        console.line(f"make run: {err}")
        return 1
    console.line(f"stopped. Data kept in {state_dir} (make run ARGS=--fresh starts over).")
    return 0


class _StartupError(Exception):
    pass


def _stopping(console: Console):
    told = []

    def handler(signum, frame):
        if not told:
            told.append(True)
            console.line("still stopping: waiting for Postgres, Redis and EventBridge to shut down ...")

    return handler


def _run(args: argparse.Namespace, console: Console, lock: StateLock, state_dir: Path, cleanup: contextlib.ExitStack) -> None:
    # Bind first: a busy port fails fast, before anything is started.
    try:
        httpd = httpserver.serve("127.0.0.1", args.port, MAX_REQUEST_BYTES)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise _StartupError(f"port {args.port} is in use on 127.0.0.1; pick another: make run PORT={args.port + 1}") from None
        raise
    cleanup.callback(httpd.server_close)
    port = httpd.server_address[1]
    base_url = f"http://127.0.0.1:{port}"

    _configure_environment(args)
    external_db = bool(os.environ.get("DATABASE_URL"))
    external_redis = bool(os.environ.get("REDIS_URL"))

    for note in stop_leftovers(state_dir):
        console.line(note)
    if args.fresh:
        wipe(state_dir)
        console.line(f"--fresh: removed the data in {state_dir}")
        if external_db or external_redis:
            console.line("--fresh: DATABASE_URL / REDIS_URL servers are yours and were left as they are")

    from devstack.bus import LocalEventBridge

    events_port = SAM_PORTS["events"] if args.sam else 0
    try:
        bus = LocalEventBridge(os.environ["EVENT_BUS_NAME"], port=events_port)
    except OSError as err:
        raise _StartupError(f"cannot start the local EventBridge on port {events_port}: {err}") from None
    cleanup.callback(bus.stop, console.event)
    os.environ["AWS_ENDPOINT_URL"] = bus.endpoint

    embedded = [name for name, external in (("Postgres", external_db), ("Redis", external_redis)) if not external]
    if embedded:
        first = not external_db and not (state_dir / "postgres" / "PG_VERSION").exists()
        console.line(f"starting the embedded {' and '.join(embedded)}{' (first run: creating the database)' if first else ''} ...")
    started = harness.start_servers(state_dir, migrate=False)
    cleanup.callback(started.stop)
    import psycopg2
    from registry import migrate

    try:
        applied = migrate.apply(started.database_url)
    except psycopg2.OperationalError as err:
        raise _StartupError(f"cannot reach Postgres at {started.database_url}: {str(err).strip()}") from None
    os.environ["DATABASE_URL"] = started.database_url
    os.environ["REDIS_URL"] = started.redis_url
    from registry import events as registry_events
    from registry import settings

    settings.get_settings.cache_clear()
    registry_events.reset_client()
    # Functions run on threads of their own here and share the layer's one
    # EventBridge client; boto3 cannot create clients from two threads at
    # once, so it is created now, before any of them runs.
    registry_events._events_client()

    relays = []
    if args.sam:
        from devstack.relay import UnixRelay

        for kind, url, external in (("postgres", started.database_url, external_db), ("redis", started.redis_url, external_redis)):
            path = None if external else _unix_socket_of(url, kind, state_dir)
            if path is None:
                continue
            try:
                relay = UnixRelay(SAM_PORTS[kind], path)
            except OSError as err:
                raise _StartupError(f"--sam: cannot listen on 127.0.0.1:{SAM_PORTS[kind]} for {kind}: {err}") from None
            cleanup.callback(relay.close)
            relays.append((kind, relay))

    def broken(name: str, err: Exception) -> None:
        console.line(f"functions/{name}/app.py does not import, so it is not served:\n{''.join(traceback.format_exception(err)).rstrip()}")

    functions = fn.discover(args.functions_dir, on_error=broken)
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true", "yes", "on"):
        # Powertools prints the ColdStart metric even with metrics disabled.
        with contextlib.suppress(ImportError):
            from aws_lambda_powertools.metrics.provider import cold_start

            cold_start.is_cold_start = False
    if args.built:
        from devstack import built

        endpoints = {"DATABASE_URL": started.database_url, "REDIS_URL": started.redis_url, "AWS_ENDPOINT_URL": bus.endpoint}
        try:
            invoker = built.local_invoker([f.name for f in functions if f.routes or f.name == harness.SWEEP], endpoints, console.line, show_all_logs=args.logs)
        except built.Unavailable as why:
            raise _StartupError(f"--built: {why}") from None
    else:
        invoker = Invoker()
    cleanup.callback(invoker.close)
    api = LocalApi(functions, invoker, console, base_url, api_format="http" if args.http_api else "rest")
    httpd.app = api

    sweep = next((f for f in functions if f.name == harness.SWEEP), None)
    if sweep is not None:

        def run_sweep() -> concurrent.futures.Future:
            return invoker.invoke(sweep, harness.scheduled_event(), timeout_seconds=60)

        sweeper = Every("liveness-sweep", args.sweep_interval, lambda: _quietly(invoker, run_sweep, console, "liveness sweep"))
        cleanup.callback(sweeper.stop)

    server_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    server_thread.start()
    cleanup.callback(httpd.shutdown)

    pids = {} if (external_db and external_redis) else embedded_pids(state_dir)
    lock.publish(
        {
            "pid": os.getpid(),
            "api": base_url,
            "eventbridge": bus.endpoint,
            "database_url": started.database_url,
            "redis_url": started.redis_url,
            "postgres_pid": None if external_db else pids.get("postgres"),
            "redis_pid": None if external_redis else pids.get("redis"),
            "started_at": datetime.now(UTC).isoformat(),
        }
    )

    _banner(console, args, api, state_dir, started, bus, applied, external_db, external_redis, sweep, relays)
    bus.watch(console.event)

    while True:
        time.sleep(0.5)


def _quietly(invoker: Invoker, start, console: Console, what: str) -> None:
    """Start background work on the invoker (``start`` returns its future)
    and wait for it; report, never raise."""
    if invoker.closed:
        return
    try:
        start().result(timeout=INTEGRATION_TIMEOUT_SECONDS * 2)
    except RuntimeError as err:
        if "shutdown" not in str(err):
            console.line(f"{console.now()}  {what} failed: {err!r}")
    except Exception:  # noqa: BLE001 - reported, the run goes on
        console.line(f"{console.now()}  {what} failed:\n{traceback.format_exc().rstrip()}")


def _banner(console, args, api, state_dir, started, bus, applied, external_db, external_redis, sweep, relays) -> None:
    rel = state_dir
    with contextlib.suppress(ValueError):
        rel = state_dir.relative_to(Path.cwd())
    console.line("")
    console.line(f"workspace registry, local (pid {os.getpid()})")
    console.line(f"  API          {api.base_url}   ({'HTTP API, payload 2.0' if api.api_format == 'http' else 'REST API'} events)")
    for route in api.routes:
        console.line(f"                 {route.method} {route.resource}  ->  functions/{route.function.name}")
    console.line(f"  OpenAPI      {api.base_url}/openapi.json")
    console.line(f"  Swagger UI   {api.base_url}/swagger   (local only)")
    console.line(f"  Dashboard    {api.base_url}/   the fleet, live (local only)")
    console.line(f"  Postgres     {started.database_url}   ({'DATABASE_URL' if external_db else 'embedded'})")
    console.line(f"  Redis        {started.redis_url}   ({'REDIS_URL' if external_redis else 'embedded'})")
    console.line(f"  EventBridge  {bus.endpoint}   bus {bus.bus_name} (moto), every event shown below")
    for kind, relay in relays:
        console.line(f"  --sam        {kind} also on 127.0.0.1:{relay.address[1]} (for sam local invoke)")
    console.line(f"  migrations   {'applied ' + ', '.join(applied) if applied else 'schema up to date'}")
    if sweep is not None:
        ttl = os.environ["LIVENESS_TTL_SECONDS"]
        console.line(f"  sweep        functions/{sweep.name} every {args.sweep_interval:g} s; silent for {ttl} s = offline (LIVENESS_TTL_SECONDS)")
    else:
        console.line(f"  sweep        none yet (functions/{harness.SWEEP}/app.py does not exist)")
    idle = [f"functions/{f.name}" for f in api.functions if not f.routes and f.name != harness.SWEEP]
    if idle:
        console.line(f"  not run      {', '.join(idle)} (no HTTP route, not scheduled)")
    console.line(f"  state        {rel}/   (kept across runs; make run ARGS=--fresh starts over)")
    console.line("")
    console.line(f"ready on {api.base_url}: requests and events below; Ctrl-C stops everything.")


if __name__ == "__main__":
    sys.exit(main())
