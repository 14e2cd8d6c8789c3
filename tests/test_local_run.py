"""`make run` as a user runs it: a real process on a free loopback port,
driven over real HTTP, its console read, stopped with Ctrl-C (SIGINT to
its process group, as a terminal sends it), and every process it started
(make, the runner, Postgres, Redis) checked gone afterwards.

Each run has its own state folder (a fresh temporary one) and never sees
the test session's DATABASE_URL / REDIS_URL: it starts its own embedded
servers, as on a fresh clone.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
START_TIMEOUT = 180  # the first run creates a database
STOP_TIMEOUT = 60

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The test session's own servers and settings must not leak in.
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "AWS_ENDPOINT_URL",
        "POWERTOOLS_LOG_LEVEL",
        "PORT",
        "SWEEP_INTERVAL_SECONDS",
        "LIVENESS_TTL_SECONDS",
        "MAKEFLAGS",
        "MFLAGS",
    ):
        env.pop(name, None)
    env.update(extra)
    return env


def run_briefly(*args: str) -> subprocess.CompletedProcess:
    """python -m devstack.local with these arguments, for a run that must
    refuse to start: it ends by itself within a minute."""
    command = [PYTHON, "-m", "devstack.local", *args]
    return subprocess.run(command, check=False, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60)


class Run:
    """One `make run` (or python -m devstack.local) in its own process group."""

    def __init__(self, state_dir: Path, port: int, *args: str, use_make: bool = True, env: dict[str, str] | None = None):
        self.state_dir = state_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        if use_make and shutil.which("make"):
            argv = ["make", "--no-print-directory", "run", f"PORT={port}", "ARGS=" + " ".join(["--state-dir", str(state_dir), *args])]
        else:
            argv = [PYTHON, "-m", "devstack.local", "--port", str(port), "--state-dir", str(state_dir), *args]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env or clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, like a terminal job
        )
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.pids: set[int] = set()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        """The first console line matching ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no console line matching {pattern!r} within {timeout} s; output:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def ready(self) -> Run:
        self.wait_for(r"^ready on http://127\.0\.0\.1:\d+", timeout=START_TIMEOUT)
        self.pids = self.started_pids()
        return self

    def info(self) -> dict:
        return json.loads((self.state_dir / "run.json").read_text())

    def started_pids(self) -> set[int]:
        """make, the runner and its threads' children, Postgres and Redis."""
        import psutil

        info = self.info()
        pids = {self.proc.pid, info["pid"]}
        pids.update(p for p in (info.get("postgres_pid"), info.get("redis_pid")) if p)
        for pid in list(pids):  # noqa: PERF101 - pids grows in the loop
            try:
                pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        return pids

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal delivers it: SIGINT to the whole job."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {STOP_TIMEOUT} s after Ctrl-C; output:\n{self.output}") from None

    def force_stop(self) -> None:
        """Test clean-up whatever happened: the job, then any server it left."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(Exception):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        from devstack.local import stop_leftovers

        with contextlib.suppress(Exception):
            stop_leftovers(self.state_dir)

    # -- HTTP
    def call(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def post(self, path: str, body, token: str | None = None) -> tuple[int, dict]:
        status, _, raw = self.call("POST", path, body, token)
        return status, json.loads(raw)


def gone(pids: set[int]) -> list[str]:
    """Those of ``pids`` still running (a zombie has exited: not counted)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def processes_using(path: Path) -> list[str]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(path) in " ".join(proc.info["cmdline"] or []):
                found.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'])[:120]}")
        except psutil.NoSuchProcess:
            pass
    return found


def assert_stopped_cleanly(run: Run, code: int) -> None:
    assert run.pids, "the run's processes were never recorded"
    deadline = time.monotonic() + 10
    while gone(run.pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not gone(run.pids), f"left running after Ctrl-C: {gone(run.pids)}\n{run.output}"
    assert not processes_using(run.state_dir), processes_using(run.state_dir)
    assert not (run.state_dir / "run.json").exists()
    assert "stopped. Data kept in" in run.output, run.output
    assert "Traceback" not in run.output, run.output
    assert code in (0, 130, 2, -signal.SIGINT), (code, run.output)


@contextlib.contextmanager
def state_folder():
    """A state folder outside pytest's basetemp: as root, pgserver runs
    Postgres as another user that must traverse the folder's parents, and
    every pytest session (other checkouts' too) resets /tmp/pytest-of-<user>
    to 0700."""
    path = Path(tempfile.mkdtemp(prefix="registry-local-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state():
    with state_folder() as path:
        yield path


@pytest.fixture(scope="module")
def live():
    """One `make run` shared by the tests below; the last test stops it."""
    with state_folder() as path:
        run = Run(path / "state", free_port())
        try:
            yield run.ready()
        finally:
            run.force_stop()


def card(name: str, version: str = "1.0.0") -> dict:
    return {"name": name, "description": "test agent", "version": version, "url": "http://localhost:8000", "skills": []}


def test_console_says_where_everything_is(live):
    for label in ("API", "OpenAPI", "Swagger UI", "Postgres", "Redis", "EventBridge", "state"):
        assert re.search(rf"^  {label}\s", live.output, re.MULTILINE), f"banner lacks {label}:\n{live.output}"
    assert f"  API          {live.base}" in live.output
    info = live.info()
    assert info["api"] == live.base and info["database_url"] in live.output and info["redis_url"] in live.output
    for path in ("/registry/register", "/registry/heartbeat", "/registry/update-card"):
        assert f"POST {path}  ->  functions/" in live.output
    # Local defaults: a silent agent goes offline a minute or so later.
    assert "sweep        functions/liveness_sweep every 15 s; silent for 60 s = offline" in live.output


def test_register_heartbeat_update_card_and_refusals_over_http(live):
    ws = str(uuid.uuid4())
    status, body = live.post("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": card("alpha")})
    assert status == 200 and body["status"] == "registered", body
    token = body["auth_token"]

    assert live.post("/registry/heartbeat", {"workspace_id": ws, "current_task": "writing tests", "active_tasks": 1}, token) == (
        200,
        {"status": "ok"},
    )
    assert live.post("/registry/update-card", {"workspace_id": ws, "agent_card": card("alpha", "1.1.0")}, token) == (
        200,
        {"status": "updated"},
    )
    wedged = {"workspace_id": ws, "runtime_state": "wedged", "sample_error": "SDK init timeout"}
    assert live.post("/registry/heartbeat", wedged, token) == (200, {"status": "ok"})

    # Someone else re-registers the id without its token: refused, nothing changes.
    assert live.post("/registry/register", {"id": ws, "url": "http://localhost:9999", "agent_card": card("mallory")}) == (
        401,
        {"error": "missing workspace auth token"},
    )
    assert live.post("/registry/heartbeat", {"workspace_id": ws}, "x" * 43)[0] == 401
    unknown = str(uuid.uuid4())
    status, body = live.post("/registry/heartbeat", {"workspace_id": unknown})
    assert status == 404 and "register" in body["error"]

    # Status, headers and body are the function's, as API Gateway passes them.
    status, headers, raw = live.call("POST", "/registry/heartbeat", raw=b"not json")
    assert status == 400 and headers["Content-Type"] == "application/json" and json.loads(raw)["error"]
    assert "x-amzn-RequestId" in headers
    # No route: what API Gateway answers.
    status, _, raw = live.call("GET", "/registry/register")
    assert status == 403 and json.loads(raw) == {"message": "Missing Authentication Token"}

    # Every event shows on the console as it is published, with its workspace.
    for kind in ("WORKSPACE_ONLINE", "TASK_UPDATED", "AGENT_CARD_UPDATED", "WORKSPACE_DEGRADED"):
        live.wait_for(rf"\d\d:\d\d:\d\d\.\d{{3}}  event  {kind}\s+{ws}  \{{")
    live.wait_for(r"http   POST /registry/register 401 .*missing workspace auth token")
    # A refused call publishes nothing.
    assert "mallory" not in live.output

    # Delivered events are marked published while the server is idle.
    import psycopg2

    conn = psycopg2.connect(live.info()["database_url"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM structure_events WHERE workspace_id = %s AND publish_pending", (ws,))
                (pending,) = cur.fetchone()
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert pending == 0
    finally:
        conn.close()


def test_an_agent_on_the_seed_runtime_works_unchanged(live):
    """The seed runtime's exact bodies, one client connection object (the
    server closes after each answer; http.client reconnects, as the
    runtime's client does), the token of its first register on every call,
    a re-register on restart."""
    ws = str(uuid.uuid4())
    agent_card = {
        "name": "seed-agent",
        "description": "molecule workspace",
        "version": "0.9.0",
        "url": "http://localhost:8001",
        "capabilities": {"streaming": True, "pushNotifications": False},
        "skills": [{"id": "chat", "name": "Chat", "tags": ["general"]}],
    }
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)

    def post(path, body, token=None):
        headers = {"Content-Type": "application/json", "User-Agent": "molecule-workspace-runtime/1.0"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, body = post("/registry/register", {"id": ws, "url": "http://localhost:8001", "agent_card": agent_card})
    assert status == 200
    token = body["auth_token"]  # the runtime keeps it; unknown fields would be ignored
    heartbeat = {
        "workspace_id": ws,
        "error_rate": 0.0,
        "sample_error": "",
        "active_tasks": 0,
        "uptime_seconds": 30,
        "current_task": "",
        "monthly_spend": 0,
        "runtime_state": "",
        "runtime_metadata": {"capabilities": {"heartbeat": False, "scheduler": False}, "idle_timeout_seconds": 600},
    }
    for uptime in (30, 60, 90):
        assert post("/registry/heartbeat", {**heartbeat, "uptime_seconds": uptime}, token) == (200, {"status": "ok"})
    assert post("/registry/update-card", {"workspace_id": ws, "agent_card": {**agent_card, "version": "0.9.1"}}, token)[0] == 200
    conn.close()

    # The container restarts: a new connection, register again with the token.
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    assert post("/registry/register", {"id": ws, "url": "http://localhost:8001", "agent_card": agent_card}, token) == (
        200,
        {"status": "registered"},
    )
    assert post("/registry/heartbeat", {**heartbeat, "uptime_seconds": 5}, token) == (200, {"status": "ok"})
    conn.close()


def test_the_seed_runtimes_discovery_calls_work_unchanged(live):
    """The seed runtime's own read calls (molecule-core workspace/a2a_client.py
    discover_peer and get_peers, research-molecule.md section 1), copied
    request for request: GET with X-Workspace-ID and the bearer token read
    from /configs/.auth_token; 200 -> resp.json(), anything else -> None / [].
    What its tools then read from the answers is read the same way here."""
    import psycopg2

    team = {"pm": str(uuid.uuid4()), "backend": str(uuid.uuid4()), "frontend": str(uuid.uuid4()), "outsider": str(uuid.uuid4())}
    tokens = {}
    for n, (name, ws) in enumerate(team.items()):
        status, body = live.post(
            "/registry/register",
            {"id": ws, "url": f"http://localhost:{8101 + n}", "agent_card": {**card(name), "skills": [{"id": f"{name}-skill", "name": name.title()}]}},
        )
        assert status == 200, body
        tokens[name] = body["auth_token"]
    # The platform owns the org chart: its rows say who is under whom.
    conn = psycopg2.connect(live.info()["database_url"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in ("backend", "frontend"):
            cur.execute("UPDATE workspaces SET parent_id = %s, name = %s, role = %s WHERE id = %s", (team["pm"], name, f"{name} engineer", team[name]))
        cur.execute("UPDATE workspaces SET name = 'pm', role = 'Project Manager' WHERE id = %s", (team["pm"],))
        cur.execute("UPDATE workspaces SET name = 'outsider', parent_id = %s WHERE id = %s", (team["backend"], team["outsider"]))
    conn.close()

    def runtime(name):
        """a2a_client as it runs inside workspace `name` (WORKSPACE_ID, auth_headers())."""
        me = team[name]
        headers = {"X-Workspace-ID": me, "Authorization": f"Bearer {tokens[name]}"}

        def get(path):
            connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10.0)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        def discover_peer(target_id):
            status, raw = get(f"/registry/discover/{target_id}")
            return json.loads(raw) if status == 200 else None

        def get_peers():
            status, raw = get(f"/registry/{me}/peers")
            return json.loads(raw) if status == 200 else []

        return me, discover_peer, get_peers

    me, discover_peer, get_peers = runtime("backend")
    # tool_delegate_task: needs a non-empty url; the name is optional.
    peer = discover_peer(team["frontend"])
    assert peer == {"id": team["frontend"], "url": "http://localhost:8103", "name": "frontend"}
    assert (peer.get("name") or team["frontend"][:8]) == "frontend"
    assert discover_peer(team["pm"])["url"] == "http://localhost:8101"  # its parent
    # Not reachable in the hierarchy, or unknown: None ("not found or not accessible").
    _, discover_from_frontend, _ = runtime("frontend")
    assert discover_from_frontend(team["outsider"]) is None
    assert discover_peer(str(uuid.uuid4())) is None

    # tool_list_peers indexes id and name directly and .get()s status and role.
    lines = [f"- {p['name']} (ID: {p['id']}, status: {p.get('status', 'unknown')}, role: {p.get('role', '')})" for p in get_peers()]
    assert lines == [
        f"- frontend (ID: {team['frontend']}, status: online, role: frontend engineer)",
        f"- outsider (ID: {team['outsider']}, status: online, role: None)",
        f"- pm (ID: {team['pm']}, status: online, role: Project Manager)",
    ]
    # coordinator.get_children (the PM's runtime): parent_id is exactly its WORKSPACE_ID.
    pm_id, _, pm_peers = runtime("pm")
    assert sorted(p["name"] for p in pm_peers() if p.get("parent_id") == pm_id) == ["backend", "frontend"]
    # shared_runtime.summarize_peer_cards: a dict card, its name and skills.
    cards = {p["id"]: p["agent_card"] for p in get_peers() if p.get("agent_card")}
    assert cards[team["frontend"]]["name"] == "frontend" and cards[team["frontend"]]["skills"][0]["id"] == "frontend-skill"

    # The anonymous callers of the runtime (builtin tools, CLI) are refused
    # for a workspace that holds a token, as on the platform today.
    status, _, raw = live.call("GET", f"/registry/{me}/peers")
    assert status == 401 and json.loads(raw) == {"error": "missing workspace auth token"}
    request = urllib.request.Request(f"{live.base}/registry/discover/{team['frontend']}", headers={"X-Workspace-ID": me})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # The platform's check-access, with the caller's token.
    assert live.post("/registry/check-access", {"caller_id": me, "target_id": team["pm"]}, tokens["backend"]) == (200, {"allowed": True})


def test_openapi_document_and_swagger_ui_are_served(live):
    status, headers, raw = live.call("GET", "/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(raw)
    assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": live.base}]
    served = {line.split()[1] for line in live.output.splitlines() if re.match(r"^\s+(?:GET|POST) /\S+  ->  functions/", line)}
    assert served and set(doc["paths"]) == served
    schemas = doc["components"]["schemas"]
    for path, model in (
        ("/registry/register", "RegisterPayload"),
        ("/registry/heartbeat", "HeartbeatPayload"),
        ("/registry/update-card", "UpdateCardPayload"),
    ):
        operation = doc["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        for code in ("200", "400", "401", "410", "413", "503"):
            assert code in operation["responses"], (path, code)
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "404" in doc["paths"]["/registry/heartbeat"]["post"]["responses"]
    assert set(schemas["RegisterPayload"]["required"]) == {"id", "url", "agent_card"}
    assert schemas["HeartbeatPayload"]["properties"]["error_rate"]["maximum"] == 1.0
    assert (
        "auth_token"
        in doc["paths"]["/registry/register"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    )

    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    jsonschema = pytest.importorskip("jsonschema")
    # The sample bodies in events/ fit the documented request schemas.
    for name, model in (
        ("register.json", "RegisterPayload"),
        ("heartbeat_spend_runtime.json", "HeartbeatPayload"),
        ("update_card_with_token.json", "UpdateCardPayload"),
    ):
        body = json.loads(json.loads((REPO / "events" / name).read_text())["body"])
        jsonschema.validate(body, {"$ref": f"#/components/schemas/{model}", "components": doc["components"]})

    status, headers, raw = live.call("GET", "/swagger")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = raw.decode()
    assert "SwaggerUIBundle" in page and "/openapi.json" in page
    for asset in re.findall(r'(?:src|href)="(/swagger/[^"]+)"', page):
        status, _, content = live.call("GET", asset)
        assert status == 200 and len(content) > 1000, asset


def test_a_second_run_on_the_same_state_folder_says_so(live):
    second = run_briefly("--port", str(free_port()), "--state-dir", str(live.state_dir))
    assert second.returncode == 1
    assert "already running" in second.stdout and str(live.info()["pid"]) in second.stdout and live.base in second.stdout
    # and the first one is untouched
    assert live.call("GET", "/openapi.json")[0] == 200


def test_a_busy_port_is_refused_before_anything_starts(live, state):
    other = state / "other-state"
    second = run_briefly("--port", str(live.port), "--state-dir", str(other))
    assert second.returncode == 1 and f"port {live.port} is in use" in second.stdout, second.stdout + second.stderr
    assert not (other / "postgres").exists() and not (other / "redis").exists()


def test_ctrl_c_stops_every_process_it_started(live):
    """Last in this module: stops the shared run."""
    assert live.proc.poll() is None
    assert len(live.pids) >= 4, live.pids  # make, the runner, Postgres, Redis (and Postgres' workers)
    code = live.interrupt()
    assert_stopped_cleanly(live, code)


def test_data_survives_a_restart_and_fresh_starts_over(state):
    ws = str(uuid.uuid4())

    first = Run(state, free_port(), use_make=False)
    try:
        first.ready()
        status, body = first.post("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": card("persist")})
        assert status == 200
        token = body["auth_token"]
        assert_stopped_cleanly(first, first.interrupt())
    finally:
        first.force_stop()

    second = Run(state, free_port(), use_make=False)
    try:
        second.ready()
        assert "schema up to date" in second.output
        # The workspace and its token are still there.
        assert second.post("/registry/heartbeat", {"workspace_id": ws}, token) == (200, {"status": "ok"})
        assert second.post("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": {}})[0] == 401
        assert_stopped_cleanly(second, second.interrupt())
    finally:
        second.force_stop()

    fresh = Run(state, free_port(), "--fresh", use_make=False)
    try:
        fresh.ready()
        assert "--fresh: removed the data" in fresh.output
        assert fresh.post("/registry/heartbeat", {"workspace_id": ws}, token)[0] == 404
        assert_stopped_cleanly(fresh, fresh.interrupt())
    finally:
        fresh.force_stop()


def test_the_sweep_runs_on_its_schedule_and_offline_shows_live(state):
    run = Run(state, free_port(), "--sweep-interval", "1", use_make=False, env=clean_env(LIVENESS_TTL_SECONDS="2"))
    try:
        run.ready()
        assert "sweep        functions/liveness_sweep every 1 s; silent for 2 s = offline" in run.output
        ws = str(uuid.uuid4())
        assert run.post("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": card("quiet")})[0] == 200
        run.wait_for(rf"event  WORKSPACE_ONLINE\s+{ws}")
        # No heartbeat: the sweep takes it offline within a few seconds.
        run.wait_for(rf"event  WORKSPACE_OFFLINE\s+{ws}", timeout=30)
        assert "liveness sweep failed" not in run.output
        assert_stopped_cleanly(run, run.interrupt())
    finally:
        run.force_stop()


# ------------------------------------------------ in-process, no server needed


def test_a_new_function_is_served_without_touching_the_runner(tmp_path):
    from devstack import functions as fn
    from devstack import harness
    from devstack import openapi

    for name in ("register", "heartbeat"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text((REPO / "functions" / name / "app.py").read_text())
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "app.py").write_text(
        '"""GET /registry/echo/<name>: a route the runner has never heard of."""\n'
        "from registry import api\n"
        "app = api.resolver()\n\n"
        '@app.get("/registry/echo/<name>")\n'
        "def echo(name):\n"
        '    return {"status": name}\n\n'
        "def lambda_handler(event, context):\n"
        "    return app.resolve(event, context)\n"
    )
    functions = fn.discover(tmp_path)
    routes = fn.route_table(functions)
    assert {(r.method, r.resource) for r in routes} == {
        ("POST", "/registry/register"),
        ("POST", "/registry/heartbeat"),
        ("GET", "/registry/echo/{name}"),
    }
    route, params = fn.find_route(routes, "GET", "/registry/echo/hello")
    assert route.function.name == "echo" and params == {"name": "hello"}
    assert fn.find_route(routes, "POST", "/registry/echo/hello") is None
    event = harness.rest_event(harness.Request("GET", "/registry/echo/hello", host="127.0.0.1:3000"), route.resource, params)
    answer = fn.http_answer(route.function.handler(event, harness.LambdaContext("echo")))
    assert answer.status == 200 and json.loads(answer.body) == {"status": "hello"}
    doc = openapi.document(functions, routes, "http://127.0.0.1:3000")
    echo = doc["paths"]["/registry/echo/{name}"]["get"]
    assert echo["parameters"][0]["name"] == "name" and "requestBody" not in echo
    assert echo["summary"] == "a route the runner has never heard of."


def test_a_request_becomes_the_proxy_event_api_gateway_sends():
    from devstack import functions as fn
    from devstack import harness

    sample = json.loads((REPO / "events" / "register.json").read_text())
    functions = [fn.load("register")]
    route, params = fn.find_route(fn.route_table(functions), "POST", "/registry/register")
    headers = [("Content-Type", "application/json"), ("X-Twice", "a"), ("X-Twice", "b"), ("Authorization", "Bearer t")]
    request = harness.Request("POST", "/registry/register", "a=1&a=2&b=", headers, '{"x": "é"}'.encode(), host="127.0.0.1:3000")
    event = harness.rest_event(request, route.resource, params)
    assert set(event) == set(sample)
    assert set(event["requestContext"]) == set(sample["requestContext"])
    assert event["resource"] == sample["resource"] and event["httpMethod"] == "POST"
    assert event["headers"]["X-Twice"] == "b" and event["multiValueHeaders"]["X-Twice"] == ["a", "b"]
    assert event["queryStringParameters"] == {"a": "2", "b": ""} and event["multiValueQueryStringParameters"]["a"] == ["1", "2"]
    assert event["body"] == '{"x": "é"}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"

    binary = harness.rest_event(harness.Request("POST", "/registry/register", body=b"\xff\xfe", host="h"), route.resource)
    assert binary["isBase64Encoded"] is True and binary["body"] == "//4=" and binary["headers"] is None

    answer = fn.http_answer(
        {"statusCode": 503, "headers": {"Retry-After": "5"}, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": "{}"}
    )
    assert answer.status == 503 and ("Retry-After", "5") in answer.headers
    assert [v for k, v in answer.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    with pytest.raises(TypeError):
        fn.http_answer({"body": "no status"})


def test_sam_relay_forwards_loopback_tcp_to_a_unix_socket(tmp_path):
    """What --sam puts in front of the embedded servers for sam local invoke."""
    from devstack.relay import UnixRelay

    path = str(tmp_path / "echo.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    relay = UnixRelay(0, path)
    try:
        with socket.create_connection(relay.address, timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(1024) == b"PING"
            relay.close()
            client.settimeout(5)
            assert client.recv(1024) == b""  # closed with the relay
        with pytest.raises(OSError):
            socket.create_connection(relay.address, timeout=1)
    finally:
        relay.close()
        server.close()
