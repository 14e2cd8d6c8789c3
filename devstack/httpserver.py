"""The local API's HTTP/1.1 server: werkzeug's, with the checks it lacks.

werkzeug's threaded development server (werkzeug.serving) accepts the
connections, runs each request on a thread of its own and writes the
answers; it parses the request line and headers with Python's http.server.
Checked one case at a time (tests/test_local_http.py), it leaves a few
things to the application, so this module adds them before the request
reaches devstack.local:

- Header lines are checked against RFC 9112's field-line grammar, on the
  bytes as sent: http.server gives the head to the email parser, which ends
  a line at a bare CR and silently drops a line with whitespace before its
  colon, together with every line after it.
- Header values lose their surrounding whitespace (RFC 9110 section 5.5 says
  it is not part of the value; API Gateway trims it too). werkzeug keeps
  trailing spaces.
- Exactly one Content-Length, digits only, or a 400. werkzeug lets the last
  of several win and reads a malformed one (``5_6``, ``+5``, ``abc``) as an
  empty body.
- Transfer-Encoding is ``chunked`` or a 400 (werkzeug ignores other codings),
  never together with Content-Length (a request-smuggling shape).
- Chunked bodies per RFC 9112 section 7.1: a chunk size is hexadecimal
  digits and nothing else (werkzeug's int(x, 16) also takes ``5_6``,
  ``0x5``, ``+5``), chunk extensions and trailer fields are accepted and
  ignored (werkzeug refuses both), a bad size is a 400 at once.
- HTTP/1.1 requests carry exactly one Host (RFC 9112 section 3.2).

What werkzeug brings as it is: a listen backlog (given here, 1024), one
thread per connection, the answer's status line, Date and Server headers,
``100 Continue``, and, after each answer, reading what a client still sends
before closing, so a refused upload sees its 413 rather than a reset.
werkzeug closes the connection after every answer (``Connection: close``):
http.server cannot tell where an unread body ends, so it does not keep
connections alive. Clients open the next connection themselves.

A refused request gets ``{"message": reason}`` from the application like
every other answer (and its line on the console); the application reads the
body through ``Request.body()``, which applies the checked framing.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# Connections the kernel queues before the server accepts them (it caps
# this at net.core.somaxconn). http.server's default of 5 made 40
# simultaneous clients wait a second for a SYN retransmission.
LISTEN_BACKLOG = 1024
# Where devstack.local's WSGI application finds the checked request.
REQUEST = "devstack.request"
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions
MAX_TRAILER_LINES = 100  # as http.client limits header lines

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9112 section 5: field-line = field-name ":" OWS field-value OWS, the
# value being visible characters, obs-text, spaces and tabs: no CR, LF,
# NUL or other controls, no whitespace before the colon, no folding.
_FIELD_LINE = re.compile(_TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r?\n\Z")
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG,
# chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*\r?\n\Z"
)
_DIGITS = re.compile(r"[0-9]+\Z")
_END_OF_HEAD = (b"\r\n", b"\n", b"")


class Refused(Exception):
    """A request answered without reaching a function: status, the reason
    for the body's ``message``, and (optionally) other words for the console."""

    def __init__(self, status: int, message: str, console: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.console = console or message


def too_large(limit: int) -> Refused:
    # API Gateway's own answer to an oversized payload.
    return Refused(413, "Request Too Long", f"request body over {limit // (1024 * 1024)} MB")


@dataclass
class Request:
    """One request as the application sees it, its framing already checked."""

    method: str
    target: str  # the request-target as sent: path and query
    headers: list[tuple[str, str]]  # names as sent, in order; values without surrounding whitespace
    client_ip: str
    stream: BinaryIO = field(repr=False)
    limit: int
    length: int = 0
    chunked: bool = False
    refusal: Refused | None = None

    def body(self) -> bytes:
        """The body, or Refused (the head's refusal, a bad chunk, over the limit)."""
        if self.refusal is not None:
            raise self.refusal
        if self.chunked:
            return read_chunked(self.stream, self.limit)
        data = self.stream.read(self.length) if self.length else b""
        if len(data) < self.length:
            raise Refused(400, "the body ended before its Content-Length")
        return data


def check_head(lines: list[bytes], version: str, headers: list[tuple[str, str]], limit: int) -> tuple[int, bool]:
    """(Content-Length, chunked) of a request, or Refused.

    ``lines`` are the head's raw lines (request line first), ``headers`` the
    parsed fields with their values trimmed.
    """
    if lines[-1] == b"":
        raise Refused(400, "the request head ended before its empty line")
    for line in lines[1:-1]:
        if line[:1] in (b" ", b"\t"):
            raise Refused(400, "obsolete line folding: a header line starts with whitespace")
        if not _FIELD_LINE.match(line):
            name = line.split(b":", 1)[0]
            if b":" not in line or not re.fullmatch(_TOKEN, name):
                raise Refused(400, "malformed header line: a field name is a token followed directly by a colon")
            raise Refused(400, f"header {name.decode('latin-1')} holds a control character")

    def values(name: str) -> list[str]:
        return [value for key, value in headers if key.lower() == name]

    http11 = version >= "HTTP/1.1"
    hosts = len(values("host"))
    if hosts > 1 or (http11 and hosts == 0):
        raise Refused(400, "a request has one Host header (HTTP/1.1 requires it)")
    lengths = values("content-length")
    codings = values("transfer-encoding")
    if codings:
        if lengths:
            raise Refused(400, "Content-Length and Transfer-Encoding together")
        if not http11:
            raise Refused(400, "Transfer-Encoding in an HTTP/1.0 request")
        # A list header may be split over several lines and hold empty items.
        found = [item.strip(" \t").lower() for value in codings for item in value.split(",")]
        if [item for item in found if item] != ["chunked"]:
            raise Refused(400, "Transfer-Encoding must be chunked alone (no other coding is supported)")
        return 0, True
    if not lengths:
        return 0, False
    if len(lengths) > 1:
        raise Refused(400, "more than one Content-Length header")
    if not _DIGITS.match(lengths[0]):
        raise Refused(400, "Content-Length must be decimal digits only")
    digits = lengths[0].lstrip("0")
    # Compared as text first: int() refuses more than 4,300 digits.
    if len(digits) > len(str(limit)) or int(digits or "0") > limit:
        raise too_large(limit)
    return int(digits or "0"), False


def read_chunked(stream: BinaryIO, limit: int) -> bytes:
    """A chunked body (RFC 9112 section 7.1) whole, or Refused."""
    body = bytearray()
    while True:
        line = stream.readline(MAX_CHUNK_LINE + 1)
        found = _CHUNK_LINE.match(line)
        if found is None:
            if not line.endswith(b"\n"):
                raise Refused(400, "chunked body: a chunk-size line is too long or cut short")
            raise Refused(400, "chunked body: a chunk size is hexadecimal digits, optionally followed by ;extensions")
        size = int(found.group(1), 16)  # base 16 has no digit limit
        if size == 0:
            break
        if len(body) + size > limit:
            raise too_large(limit)
        data = stream.read(size)
        if len(data) < size:
            raise Refused(400, "chunked body: a chunk ended before its size")
        body += data
        if stream.readline(2) not in (b"\r\n", b"\n"):
            raise Refused(400, "chunked body: chunk data is not followed by CRLF")
    # Trailer fields: checked like header lines, then ignored (RFC 9112 section 7.1.2 allows it).
    for _ in range(MAX_TRAILER_LINES):
        line = stream.readline(MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return bytes(body)
        if not _FIELD_LINE.match(line):
            raise Refused(400, "chunked body: malformed trailer field or missing final CRLF")
    raise Refused(400, f"chunked body: more than {MAX_TRAILER_LINES} trailer fields")


class _HeadRecorder:
    """The connection's input, keeping the raw lines of the request head.

    http.server reads the head line by line through ``readline``; the
    checks above need those lines as sent, not the email parser's view.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.lines: list[bytes] = []
        self._recording = True

    def start(self) -> None:
        self.lines = []
        self._recording = True

    def readline(self, limit: int = -1) -> bytes:
        line = self._stream.readline(limit)
        if self._recording:
            self.lines.append(line)
            # The request line, then header lines up to the empty one (or EOF).
            if line == b"" or (len(self.lines) > 1 and line in _END_OF_HEAD):
                self._recording = False
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RequestHandler(WSGIRequestHandler):
    """werkzeug's request handler plus the checks in the module doc."""

    protocol_version = "HTTP/1.1"
    server_version = "workspace-registry-local"  # werkzeug would say Werkzeug/x.y
    # Headers and body are two writes; with Nagle on, the body could wait
    # for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    timeout = 120  # a client that stops sending mid-request

    def setup(self) -> None:
        super().setup()
        self.rfile = _HeadRecorder(self.rfile)

    def handle_one_request(self) -> None:
        self.rfile.start()
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        # http.server would send 100 Continue while parsing; werkzeug sends
        # it again in run_wsgi. Only werkzeug's, after the checks, is sent.
        return True

    def run_wsgi(self) -> None:
        headers = [(name, value.strip(" \t")) for name, value in self.headers.items()]
        limit = self.server.max_body
        self.request = Request(self.command, self.path, headers, self.client_address[0], self.rfile, limit)
        try:
            self.request.length, self.request.chunked = check_head(self.rfile.lines, self.request_version, headers, limit)
        except Refused as refusal:
            self.request.refusal = refusal
        if self.request.refusal is not None or self.request_version < "HTTP/1.1":
            # No 100 Continue for a request that is refused anyway, nor for
            # HTTP/1.0, which must ignore it (RFC 9110 section 10.1.1).
            del self.headers["Expect"]
        super().run_wsgi()

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[REQUEST] = self.request
        return environ

    # devstack.local writes its own line per request; werkzeug's logger
    # would print another on stderr.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(host: str, port: int, max_body: int, app=None) -> BaseWSGIServer:
    """A threaded werkzeug server on host:port with the handler above,
    refusing bodies over ``max_body`` bytes with 413.

    The socket is bound here, so a busy port raises OSError to the caller
    (werkzeug itself would print to stderr and exit); ``app`` may be set
    later as ``server.app``.
    """
    listener = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    try:
        # werkzeug adopts a listening socket through fd (as its reloader does).
        server = make_server(host, port, app, threaded=True, request_handler=RequestHandler, fd=listener.fileno())
    finally:
        listener.close()  # werkzeug holds a duplicate
    server.max_body = max_body
    return server
