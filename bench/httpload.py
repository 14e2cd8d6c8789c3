"""The local API over HTTP with concurrent clients (for information).

Drives ``python -m devstack.local`` (the ``make run`` server) on
127.0.0.1 with a bounded number of steady heartbeats from a pool of client
threads, each with its own http.client connection (werkzeug's server
closes the connection after every answer, so each request opens a new
one). The server runs each function on one worker thread, like one warm
Lambda container, and every request here goes to the heartbeat, so this
measures the local runner (HTTP, the API Gateway event, the function), not
what a fleet of Lambda containers behind API Gateway would sustain.

If the local server cannot be started, a minimal in-process
``http.server`` adapter serves the same ``lambda_handler`` instead, and
the result says so.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench.common import log, stdout_to_devnull, summary
from devstack.harness import REPO, LambdaContext, api_event, load_function

READY = re.compile(r"ready on (http://127\.0\.0\.1:(\d+))")


class LocalServer:
    def __init__(self, database_url: str, redis_url: str):
        self.state_dir = tempfile.mkdtemp(prefix="registry-bench-http-")
        env = dict(os.environ)
        env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"})
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EVENTS", "POWERTOOLS_LOG_LEVEL"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack.local", "--port", "0", "--state-dir", self.state_dir, "--sweep-interval", "3600"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = self._wait_ready(90)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.tail = (self.tail + [line.rstrip()])[-20:]
            found = READY.search(line)
            if found:
                # From here on nobody reads the queue: stop keeping lines.
                threading.Thread(target=self._discard, daemon=True).start()
                return int(found.group(2))
        self.stop()
        raise RuntimeError("devstack.local did not become ready:\n" + "\n".join(self.tail))

    def _discard(self) -> None:
        while self.lines.get() is not None:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.state_dir, ignore_errors=True)


class InProcessServer:
    """The fallback: lambda_handler behind http.server, one call at a time."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        functions = {"/registry/register": load_function("register"), "/registry/heartbeat": load_function("heartbeat")}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: without TCP_NODELAY the body
            # waits for the client's delayed ACK (about 40 ms per request).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fn = functions.get(self.path)
                if fn is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {"Content-Type": "application/json"}
                if self.headers.get("Authorization"):
                    headers["Authorization"] = self.headers["Authorization"]
                event = api_event(self.path, raw=body.decode(), headers=headers)
                with lock:
                    result = fn.lambda_handler(event, LambdaContext())
                payload = result["body"].encode()
                self.send_response(result["statusCode"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _post(conn: http.client.HTTPConnection, path: str, body: dict, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def measure(database_url: str, redis_url: str, requests: int, clients: int, pool: int | None = None) -> dict[str, Any]:
    if pool is None:
        pool = min(64, max(clients, requests // 8))
    # The in-process fallback's functions print their logs and metrics here.
    with stdout_to_devnull():
        return _measure(database_url, redis_url, requests, clients, pool)


def _measure(database_url: str, redis_url: str, requests: int, clients: int, pool: int) -> dict[str, Any]:
    server: Any
    try:
        log("http: starting devstack.local (python -m devstack.local --port 0)")
        server = LocalServer(database_url, redis_url)
        kind = "devstack.local (make run's server, separate process)"
    except Exception as err:  # noqa: BLE001 - any failure means: use the fallback
        log(f"http: devstack.local unavailable ({str(err).splitlines()[0]}); using the in-process adapter")
        server = InProcessServer()
        kind = "in-process http.server adapter (devstack.local unavailable)"
    try:
        import uuid

        setup = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        workspaces = []
        for _ in range(max(pool, clients)):
            ws = str(uuid.uuid4())
            status, raw = _post(setup, "/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "agent"}})
            if status != 200:
                raise RuntimeError(f"http: register answered {status}: {raw[:200]!r}")
            token = json.loads(raw)["auth_token"]
            body = {"workspace_id": ws, "error_rate": 0.0, "active_tasks": 1, "uptime_seconds": 60, "current_task": "steady"}
            _post(setup, "/registry/heartbeat", body, token)  # first one publishes TASK_UPDATED
            workspaces.append((body, token))
        setup.close()

        latencies: list[float] = []
        failures: list[int] = []
        lock = threading.Lock()
        remaining = [requests]

        def client(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            mine = workspaces[index::clients]
            k = 0
            local_lat, local_fail = [], []
            while True:
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                body, token = mine[k % len(mine)]
                k += 1
                started = time.perf_counter()
                status, _ = _post(conn, "/registry/heartbeat", body, token)
                local_lat.append(time.perf_counter() - started)
                if status != 200:
                    local_fail.append(status)
            conn.close()
            with lock:
                latencies.extend(local_lat)
                failures.extend(local_fail)

        log(f"http: {requests} heartbeats from {clients} concurrent clients")
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        wall = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "server": kind,
        "requests": len(latencies),
        "workspaces": len(workspaces),
        "clients": clients,
        "failures": len(failures),
        "seconds": wall,
        "requests_per_second": len(latencies) / wall if wall > 0 else float("nan"),
        "latency": summary(latencies),
    }
