"""A Lambda Runtime API emulator: what Lambda's service side offers the
runtime client in a function's sandbox, for one function process.

The Lambda runtime client (``awslambdaric``, the code in Lambda's own
/var/runtime) long-polls ``GET /2018-06-01/runtime/invocation/next`` for
the next event, runs the handler, and posts the result to
``.../invocation/{id}/response`` or ``.../invocation/{id}/error``; a
handler module that fails to import is posted to ``/runtime/init/error``.
This server speaks that protocol (the headers too: request id, deadline,
function ARN, trace id), so the built artifact runs exactly as in Lambda,
driven by ``invoke()``.

The time from the process start to its first ``GET .../next`` is the
function's init duration, as Lambda reports it.

    api = RuntimeApi(function_name="heartbeat")
    # start the runtime client with AWS_LAMBDA_RUNTIME_API=api.address
    result = api.invoke({"body": "..."}, timeout=10)   # -> Outcome
    api.close()    # a waiting runtime client is told to stop (HTTP 500)
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.harness import ACCOUNT, REGION

PREFIX = "/2018-06-01/runtime"
# Lambda's limit on a synchronous response payload.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024


class InitError(Exception):
    """The function failed before it asked for its first event."""

    def __init__(self, error: dict[str, Any]):
        self.error = error
        super().__init__(f"{error.get('errorType', '?')}: {error.get('errorMessage', '')}")


class InvocationTimeout(Exception):
    pass


class RuntimeGone(Exception):
    """The runtime process stopped (or was stopped) during an invocation."""


@dataclass
class Outcome:
    """What the runtime client posted for one invocation."""

    request_id: str
    ok: bool
    payload: Any  # the decoded JSON response, or the error document
    error_type: str | None = None
    seconds: float = 0.0

    def raise_for_error(self) -> Any:
        if not self.ok:
            raise RuntimeError(f"function error {self.error_type}: {json.dumps(self.payload)[:2000]}")
        return self.payload


@dataclass
class _Invocation:
    request_id: str
    body: bytes
    deadline_ms: int
    trace_id: str
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


class RuntimeApi:
    """One function's Runtime API on 127.0.0.1 (a port of its own)."""

    def __init__(self, function_name: str = "function", host: str = "127.0.0.1", timeout_seconds: float = 30.0):
        self.function_name = function_name
        self.function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.timeout_seconds = timeout_seconds
        self._pending: queue.Queue[_Invocation | None] = queue.Queue()
        self._in_flight: dict[str, _Invocation] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ready = threading.Event()
        self.init_error: dict[str, Any] | None = None
        self.first_next_at: float | None = None  # time.monotonic() of the first GET .../next
        self.next_calls = 0
        self._polling = 0  # GET .../next requests waiting for an event
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- driver

    def wait_ready(self, timeout: float) -> bool:
        """Until the runtime asks for its first event (init done) or posts an
        init error; False on time-out."""
        return self._ready.wait(timeout)

    def invoke(self, event: Any, timeout: float | None = None, *, trace_id: str | None = None) -> Outcome:
        """Hand ``event`` to the runtime and wait for its answer."""
        if self._closed.is_set():
            raise RuntimeGone("the runtime API is closed")
        if self.init_error is not None:
            raise InitError(self.init_error)
        timeout = self.timeout_seconds if timeout is None else timeout
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        invocation = _Invocation(
            request_id=str(uuid.uuid4()),
            body=body,
            deadline_ms=int((time.time() + timeout) * 1000),
            trace_id=trace_id or _trace_id(),
        )
        with self._lock:
            self._in_flight[invocation.request_id] = invocation
        self._pending.put(invocation)
        if not invocation.done.wait(timeout):
            with self._lock:
                self._in_flight.pop(invocation.request_id, None)
            raise InvocationTimeout(f"{self.function_name}: no answer within {timeout:g} s")
        if invocation.outcome is None:
            if self.init_error is not None:
                raise InitError(self.init_error)
            raise RuntimeGone(f"{self.function_name}: the runtime stopped before it answered")
        return invocation.outcome

    def abandon(self, reason: str = "the runtime process exited") -> None:
        """Fail every invocation in flight (the process died)."""
        with self._lock:
            stuck = list(self._in_flight.values())
            self._in_flight.clear()
        for invocation in stuck:
            invocation.done.set()

    def close(self) -> None:
        """Tell a waiting runtime to stop (its next poll gets HTTP 500) and stop serving."""
        self._closed.set()
        self._pending.put(None)
        self.abandon()
        # Let a waiting poll receive its answer before the socket goes.
        deadline = time.monotonic() + 1.0
        while self._polling and time.monotonic() < deadline:
            time.sleep(0.01)
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------- server callbacks

    def _next(self) -> _Invocation | None:
        with self._lock:
            self.next_calls += 1
            if self.first_next_at is None:
                self.first_next_at = time.monotonic()
            self._polling += 1
        self._ready.set()
        try:
            while True:
                if self._closed.is_set():
                    return None
                try:
                    invocation = self._pending.get(timeout=0.5)
                except queue.Empty:
                    continue
                if invocation is None:
                    self._pending.put(None)  # keep telling every later poll too
                    return None
                with self._lock:
                    if invocation.request_id in self._in_flight:  # not timed out meanwhile
                        invocation.started = time.monotonic()
                        return invocation
        finally:
            with self._lock:
                self._polling -= 1

    def _finish(self, request_id: str, ok: bool, payload: Any, error_type: str | None) -> bool:
        with self._lock:
            invocation = self._in_flight.pop(request_id, None)
        if invocation is None:
            return False
        invocation.outcome = Outcome(request_id, ok, payload, error_type, time.monotonic() - invocation.started)
        invocation.done.set()
        return True

    def _init_failed(self, error: dict[str, Any]) -> None:
        self.init_error = error
        self._ready.set()
        self.abandon()


def _trace_id() -> str:
    """An X-Ray trace header as Lambda passes it (Lambda-Runtime-Trace-Id)."""
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return {"raw": body.decode("utf-8", "replace")}


def _handler_for(api: RuntimeApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runtime-api-emulator"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body if body is not None else {"status": "OK"}).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", (headers or {}).get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(length) if length > 0 else b""

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404, {"errorMessage": f"unknown path {self.path}", "errorType": "InvalidRequest"})
                return
            invocation = api._next()
            if invocation is None:
                # Lambda answers 500 when the sandbox is going away; the
                # runtime client then ends its loop.
                self._reply(500, {"errorMessage": "the emulator is shutting down", "errorType": "Runtime.ExitError"})
                return
            self._reply(
                200,
                invocation.body,
                {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": invocation.trace_id,
                    "Content-Type": "application/json",
                },
            )

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path.split("/")
            # /2018-06-01/runtime/invocation/{id}/response|error
            if self.path == f"{PREFIX}/init/error":
                error = _decode(body) or {}
                error.setdefault("errorType", self.headers.get("Lambda-Runtime-Function-Error-Type", "Runtime.Unknown"))
                api._init_failed(error)
                self._reply(202)
                return
            if len(parts) == 6 and self.path.startswith(f"{PREFIX}/invocation/") and parts[5] in ("response", "error"):
                request_id = parts[4]
                if parts[5] == "response":
                    if len(body) > MAX_RESPONSE_BYTES:
                        api._finish(
                            request_id,
                            False,
                            {"errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size"},
                            "Function.ResponseSizeTooLarge",
                        )
                        self._reply(413, {"errorMessage": "response too large", "errorType": "RequestEntityTooLarge"})
                        return
                    known = api._finish(request_id, True, _decode(body), None)
                else:
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
                    known = api._finish(request_id, False, _decode(body), error_type)
                if known:
                    self._reply(202)
                else:
                    self._reply(400, {"errorMessage": f"unknown or finished request id {request_id}", "errorType": "InvalidRequestID"})
                return
            self._reply(404, {"errorMessage": f"unknown path {self.path}", "errorType": "InvalidRequest"})

    return Handler
