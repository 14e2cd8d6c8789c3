"""An RDS Proxy stand-in for the tests: a small TLS-only front to Postgres
that refuses what RDS Proxy refuses and records what would pin a session.

RDS Proxy (``RequireTLS: true``, template.yaml) differs from a plain
Postgres in three ways the registry must survive, and this stand-in
reproduces them so the functions' own connection code is tested through
it:

1. It speaks TLS only: a client that does not ask for TLS gets
   ``FATAL: This RDS Proxy requires TLS connections``.
2. It refuses a startup packet that carries libpq ``options``:
   ``FATAL: Feature not supported: RDS Proxy currently doesn’t support
   command-line options.`` (the text users of psycopg2, pgstac and
   Superset quote, SQLSTATE 0A000).
3. It multiplexes client sessions over database connections at
   transaction boundaries, unless a statement changes session state: then
   it *pins* the client to one database connection until the client
   disconnects. :func:`pinning_reasons` applies AWS's list ("Avoiding
   pinning an RDS Proxy", PostgreSQL) to a statement's text; the stand-in
   runs it on every simple-protocol Query and extended-protocol Parse a
   client sends and records the hits in :attr:`ProxyStandIn.pins`.

It does not multiplex: each client connection gets its own upstream
connection and every byte after the startup packet is relayed unchanged
(authentication included), so backend PIDs, cancel keys and server errors
are the real server's. When the upstream cannot be reached it answers
with RDS Proxy's borrow time-out text at once (the real proxy waits
``ConnectionBorrowTimeout``, 5 s in template.yaml).

    with ProxyStandIn(upstream_dsn) as proxy:
        conn = psycopg2.connect(proxy.dsn())
        ...
        assert proxy.pinned == []
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import selectors
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions

# What RDS Proxy answers. The apostrophe is U+2019, as in the reports
# (psycopg/psycopg2#1577, stac-utils/pgstac#156).
OPTIONS_REFUSED = "Feature not supported: RDS Proxy currently doesn\u2019t support command-line options."
OPTIONS_REFUSED_CODE = "0A000"  # feature_not_supported
TLS_REQUIRED = "This RDS Proxy requires TLS connections"
TLS_REQUIRED_CODE = "28000"  # invalid_authorization_specification (Postgrex prints it)
UPSTREAM_UNAVAILABLE = "Timed-out waiting to acquire database connection"
UPSTREAM_UNAVAILABLE_CODE = "08006"  # connection_failure: our choice, the proxy's code is not documented

# "Any statement with a text size greater than 16 KB causes the proxy to
# pin the session." (all engine families)
STATEMENT_TEXT_LIMIT = 16 * 1024

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 3 << 16
_MAX_STARTUP = 10_000  # Postgres' own limit on a startup packet
_HANDSHAKE_SECONDS = 10


# --- The classifier: a pure function of the statement text ---------------

# Transaction-scoped settings. AWS's PostgreSQL list says "Using SET
# commands" pins, with no exception; its sentence "RDS Proxy does not pin
# connections when you use SET LOCAL" sits in the Aurora MySQL list. So
# these count, with a reason that says so, and callers can tell them apart.
TRANSACTION_SCOPED = "transaction-scoped SET"

_SESSION_ADVISORY = re.compile(
    r"\b(pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock|pg_try_advisory_lock_shared"
    r"|pg_advisory_unlock|pg_advisory_unlock_shared|pg_advisory_unlock_all)\s*\(",
    re.IGNORECASE,
)
_SEQUENCE_FUNCTION = re.compile(r"\b(nextval|setval|currval|lastval)\s*\(", re.IGNORECASE)
_SET_CONFIG = re.compile(r"\bset_config\s*\(", re.IGNORECASE)
_TEMP_OBJECT = re.compile(
    r"^CREATE\s+(OR\s+REPLACE\s+)?((GLOBAL|LOCAL)\s+)?(TEMP|TEMPORARY)\s+(UNLOGGED\s+)?(RECURSIVE\s+)?(TABLE|SEQUENCE|VIEW)\b"
)
_INTO_TEMP = re.compile(r"\bINTO\s+(TEMP|TEMPORARY)\b")
_LITERAL = re.compile(r"^'S(\d+)'$")

# First words of statements that pin, with AWS's words for why.
_LEADING = [
    (
        re.compile(r"^SET\s+(LOCAL|TRANSACTION|CONSTRAINTS)\b"),
        TRANSACTION_SCOPED + " (AWS: 'Using SET commands'; its SET LOCAL exemption is written for MySQL)",
    ),
    (re.compile(r"^SET\b"), "SET (AWS: 'Using SET commands')"),
    (re.compile(r"^RESET\b"), "RESET (AWS: 'resetting a parameter to its default')"),
    (re.compile(r"^PREPARE\b(?!\s+TRANSACTION\b)"), "PREPARE (AWS: prepared statements)"),
    (re.compile(r"^EXECUTE\b"), "EXECUTE (AWS: prepared statements)"),
    (re.compile(r"^DEALLOCATE\b"), "DEALLOCATE (AWS: prepared statements)"),
    (re.compile(r"^DISCARD\b"), "DISCARD (AWS: 'Discarding the session state')"),
    (re.compile(r"^LISTEN\b"), "LISTEN (AWS: 'Listening on a notification channel')"),
    (re.compile(r"^LOAD\b"), "LOAD (AWS: 'Loading a library module')"),
    (re.compile(r"^DECLARE\b"), "DECLARE (AWS: 'Declaring cursors')"),
    (_TEMP_OBJECT, "CREATE TEMP (AWS: 'Creating temporary sequences, tables, or views')"),
]


def pinning_reasons(sql: str) -> list[str]:
    """Why RDS Proxy would pin the session that sends ``sql`` (empty: it would not).

    Follows AWS's "Conditions that cause pinning" for PostgreSQL and for all
    engine families. Comments, string literals, quoted identifiers and
    dollar-quoted bodies (DO blocks, function bodies) are not read: calling
    stored functions does not pin ("RDS Proxy doesn't detect any session
    state changes resulting from such calls"), and neither do the
    transaction-level advisory lock functions (``pg_advisory_xact_lock``,
    ``pg_try_advisory_xact_lock`` and their ``_shared`` forms).
    """
    reasons: list[str] = []
    if len(sql.encode("utf-8", "surrogatepass")) > STATEMENT_TEXT_LIMIT:
        reasons.append(f"statement text over {STATEMENT_TEXT_LIMIT} bytes (AWS: 'greater than 16 KB')")
    masked, literals = _mask(sql)
    for statement in masked.split(";"):
        text = " ".join(statement.split()).upper()
        if not text:
            continue
        for pattern, reason in _LEADING:
            if pattern.search(text):
                reasons.append(reason)
                break
        if _INTO_TEMP.search(text):
            reasons.append("SELECT INTO TEMP (AWS: 'Creating temporary ... tables')")
        for m in _SESSION_ADVISORY.finditer(text):
            reasons.append(f"{m.group(1).lower()}() (AWS: session-level advisory lock functions)")
        for m in _SEQUENCE_FUNCTION.finditer(text):
            reasons.append(f"{m.group(1).lower()}() (AWS: 'Manipulating sequences using functions such as nextval and setval')")
        for m in _SET_CONFIG.finditer(text):
            reasons.append(_set_config_reason(text, m.end(), literals))
    return reasons


def is_transaction_scoped(reason: str) -> bool:
    return reason.startswith(TRANSACTION_SCOPED)


def _set_config_reason(text: str, start: int, literals: list[str]) -> str:
    """set_config(name, value, is_local): a session SET unless is_local is literally true."""
    args, depth, current = [], 0, []
    for ch in text[start:]:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    args.append("".join(current).strip())
    is_local = args[2] if len(args) > 2 else ""
    literal = _LITERAL.match(is_local)
    value = literals[int(literal.group(1))].strip().lower() if literal else is_local.lower()
    if value in ("true", "t", "on", "yes", "y", "1"):
        return TRANSACTION_SCOPED + ": set_config(..., true) (AWS: 'using SET and set_config commands')"
    return "set_config(..., false) (AWS: 'using SET and set_config commands')"


def _mask(sql: str) -> tuple[str, list[str]]:
    """``sql`` with comments blanked and literals replaced by 'S<n>' tokens
    (their texts returned), so keywords are looked for in code only."""
    out: list[str] = []
    literals: list[str] = []
    i, n = 0, len(sql)

    def literal(text: str) -> str:
        literals.append(text)
        return f" 'S{len(literals) - 1}' "

    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif ch == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif ch == "'":
            backslash = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            j, buf = i + 1, []
            while j < n:
                c = sql[j]
                if backslash and c == "\\" and j + 1 < n:
                    buf.append(sql[j + 1])
                    j += 2
                elif c == "'" and sql.startswith("''", j):
                    buf.append("'")
                    j += 2
                elif c == "'":
                    j += 1
                    break
                else:
                    buf.append(c)
                    j += 1
            out.append(literal("".join(buf)))
            i = j
        elif ch == '"':
            end = i + 1
            while end < n:
                if sql.startswith('""', end):
                    end += 2
                elif sql[end] == '"':
                    break
                else:
                    end += 1
            out.append(' "I" ')
            i = end + 1
        elif ch == "$" and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
            tag = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if tag is None:  # a parameter such as $1
                out.append(ch)
                i += 1
                continue
            close = sql.find(tag.group(0), i + len(tag.group(0)))
            body_end = n if close < 0 else close
            out.append(literal(sql[i + len(tag.group(0)) : body_end]))
            i = n if close < 0 else close + len(tag.group(0))
        else:
            out.append(ch)
            i += 1
    return "".join(out), literals


# --- The stand-in ----------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """A statement a client sent that would pin its RDS Proxy session."""

    statement: str
    reasons: tuple[str, ...]
    application_name: str | None
    database: str | None

    @property
    def transaction_scoped_only(self) -> bool:
        return all(is_transaction_scoped(r) for r in self.reasons)


class ProxyStandIn:
    """A TLS-only Postgres front that behaves as RDS Proxy does at the door.

    ``address`` is where it listens once started; :meth:`dsn` is the
    upstream DSN rewritten to reach the same database through it.
    ``pinned`` holds the text of every statement that would pin a session,
    ``pins`` the same with reasons and the client's application_name,
    ``refused`` the reasons of every connection it turned away.
    ``cert_path`` / ``ca_pem``: its self-signed certificate (also its own
    CA), for a client that wants ``sslmode=verify-full``.
    """

    def __init__(self, upstream_dsn: str, *, host: str = "127.0.0.1", port: int = 0):
        self.upstream_dsn = upstream_dsn
        self._upstream = _upstream_address(psycopg2.extensions.parse_dsn(upstream_dsn))
        self._bind = (host, port)
        self.address: tuple[str, int] = (host, port)
        self.pins: list[Pin] = []
        self.refused: list[str] = []
        self.connections: Counter[str] = Counter()  # relayed sessions per application_name
        self.statements: Counter[str] = Counter()  # Query/Parse messages per application_name
        self.cert_path: str | None = None
        self.ca_pem: str | None = None
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._dir: str | None = None
        self._stopped = threading.Event()

    # -- life cycle

    def start(self) -> ProxyStandIn:
        self._dir = tempfile.mkdtemp(prefix="rdsproxy-")
        self.cert_path, key_path, self.ca_pem = _self_signed(Path(self._dir), self._bind[0])
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(self.cert_path, key_path)
        self._listener = socket.create_server(self._bind, backlog=128)
        self.address = self._listener.getsockname()[:2]
        accept = threading.Thread(target=self._accept, name=f"rdsproxy-accept-{self.address[1]}", daemon=True)
        accept.start()
        self._accept_thread = accept
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            except OSError:
                pass
            self._listener.close()
            self._accept_thread.join(5)
        with self._lock:
            live, threads = list(self._live), list(self._threads)
        for sock in live:
            _shutdown(sock)
        for t in threads:
            t.join(5)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ProxyStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests use

    def dsn(self, **overrides) -> str:
        """The upstream DSN with the proxy's host and port and ``sslmode=require``:
        same user, password, database and other settings."""
        params = dict(psycopg2.extensions.parse_dsn(self.upstream_dsn))
        for key in ("host", "hostaddr", "port", "sslmode", "requiressl", "sslnegotiation", "sslrootcert", "sslcert", "sslkey", "sslcrl"):
            params.pop(key, None)
        params.update(host=self.address[0], port=str(self.address[1]), sslmode="require")
        params.update({k: str(v) for k, v in overrides.items()})
        return psycopg2.extensions.make_dsn(**params)

    def pins_of(self, application_name: str) -> list[Pin]:
        with self._lock:
            return [p for p in self.pins if p.application_name == application_name]

    @property
    def pinned(self) -> list[str]:
        """The text of each statement that would pin, in order."""
        with self._lock:
            return [p.statement for p in self.pins]

    def clear(self) -> None:
        with self._lock:
            self.pins.clear()
            self.refused.clear()
            self.connections.clear()
            self.statements.clear()

    # -- serving

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), name="rdsproxy-conn", daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        self._track(client)
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # relayed replies go out at once
            client.settimeout(_HANDSHAKE_SECONDS)
            client, startup = self._handshake(client)
            if startup is None:
                return
            params = _startup_params(startup)
            if "options" in params:
                # RDS Proxy checks this before it touches the database.
                self._refuse(client, OPTIONS_REFUSED_CODE, OPTIONS_REFUSED, f"startup options {params['options']!r}")
                return
            try:
                upstream = self._connect_upstream()
            except OSError as err:
                self._refuse(client, UPSTREAM_UNAVAILABLE_CODE, UPSTREAM_UNAVAILABLE, f"upstream unavailable: {err}")
                return
            self._track(upstream)
            upstream.sendall(startup)
            app = params.get("application_name") or ""
            with self._lock:
                self.connections[app] += 1
            self._relay(client, upstream, _Inspector(self, app, params.get("database")))
        except (OSError, ssl.SSLError, ValueError):
            pass  # a client that went away or spoke nonsense: just close
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)
                    _shutdown(sock)
                    sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, client: socket.socket) -> tuple[socket.socket, bytes | None]:
        """Negotiate TLS and return the client's StartupMessage (None: done with it)."""
        tls = False
        for _ in range(3):  # GSSENCRequest, SSLRequest, StartupMessage at most
            packet = _read_packet(client)
            code = struct.unpack("!I", packet[4:8])[0]
            if code == _GSSENC_REQUEST and not tls:
                client.sendall(b"N")  # no GSSAPI: libpq goes on to ask for TLS
            elif code == _SSL_REQUEST and not tls:
                client.sendall(b"S")
                self._untrack(client)  # its file descriptor moves to the TLS socket
                client = self._context.wrap_socket(client, server_side=True)
                self._track(client)
                tls = True
            elif code == _CANCEL_REQUEST:
                # libpq sends cancels in clear text on a new connection; pass
                # them on so a client's cancel works through the stand-in.
                with self._connect_upstream() as upstream:
                    upstream.sendall(packet)
                return client, None
            elif code >> 16 == 3:
                if not tls:
                    self._refuse(client, TLS_REQUIRED_CODE, TLS_REQUIRED, "client did not ask for TLS")
                    return client, None
                return client, packet
            else:
                return client, None
        return client, None

    def _connect_upstream(self) -> socket.socket:
        family, address = self._upstream
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(address)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def _relay(self, client: socket.socket, upstream: socket.socket, inspector: _Inspector) -> None:
        """Copy bytes both ways until either side ends; frontend messages are inspected."""
        client.setblocking(False)
        upstream.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            while not self._stopped.is_set():
                # TLS may hold decrypted bytes the socket no longer shows.
                pending = isinstance(client, ssl.SSLSocket) and client.pending() > 0
                ready = [client] if pending else [key.fileobj for key, _ in sel.select(timeout=1.0)]
                for sock in ready:
                    data = _recv(sock)
                    if data is None:
                        continue  # a TLS record not complete yet
                    if not data:
                        return
                    if sock is client:
                        inspector.feed(data)
                        _send_all(upstream, data)
                    else:
                        _send_all(client, data)

    def _refuse(self, client: socket.socket, code: str, message: str, reason: str) -> None:
        with self._lock:
            self.refused.append(reason)
        try:
            client.sendall(_error_response(code, message))
        except OSError:
            pass

    def _record(self, statement: str, reasons: list[str], app: str, database: str | None) -> None:
        pin = Pin(statement.strip(), tuple(reasons), app, database)
        with self._lock:
            self.pins.append(pin)

    def _count(self, app: str) -> None:
        with self._lock:
            self.statements[app] += 1

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)


class _Inspector:
    """Parses the frontend message stream of one session (after startup)."""

    def __init__(self, proxy: ProxyStandIn, app: str, database: str | None):
        self.proxy, self.app, self.database = proxy, app, database
        self.buf = bytearray()
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buf += data
        while len(self.buf) >= 5:
            kind = self.buf[0:1]
            length = struct.unpack("!I", self.buf[1:5])[0]
            if length < 4:
                self.broken = True  # not the protocol we know: relay, stop reading
                return
            if len(self.buf) < 1 + length:
                return
            body = bytes(self.buf[5 : 1 + length])
            del self.buf[: 1 + length]
            self._message(kind, body)

    def _message(self, kind: bytes, body: bytes) -> None:
        if kind == b"Q":
            sql = body.rstrip(b"\0").decode("utf-8", "replace")
            self.proxy._count(self.app)
            reasons = pinning_reasons(sql)
            if reasons:
                self.proxy._record(sql, reasons, self.app, self.database)
        elif kind == b"P":
            name, _, rest = body.partition(b"\0")
            sql = rest.partition(b"\0")[0].decode("utf-8", "replace")
            self.proxy._count(self.app)
            reasons = pinning_reasons(sql)
            if name:
                reasons.insert(0, f"named prepared statement {name.decode('utf-8', 'replace')!r} (AWS: prepared statements)")
            if reasons:
                self.proxy._record(sql, reasons, self.app, self.database)


# --- wire helpers ----------------------------------------------------------


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client closed during startup")
        buf += chunk
    return bytes(buf)


def _read_packet(sock: socket.socket) -> bytes:
    """A startup-phase packet: int32 length (itself included), then the rest."""
    head = _read_exact(sock, 4)
    length = struct.unpack("!I", head)[0]
    if not 8 <= length <= _MAX_STARTUP:
        raise ValueError(f"startup packet length {length}")
    return head + _read_exact(sock, length - 4)


def _startup_params(packet: bytes) -> dict[str, str]:
    fields = packet[8:].split(b"\0")
    params = {}
    for key, value in zip(fields[0::2], fields[1::2]):
        if not key:
            break
        params[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return params


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(k + v.encode() + b"\0" for k, v in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message)))
    fields += b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


def _recv(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionError):
        return b""


def _send_all(sock: socket.socket, data: bytes) -> None:
    """sendall for a non-blocking (TLS or plain) socket."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except ssl.SSLWantReadError:
            _wait(sock, read=True)
            continue
        except (ssl.SSLWantWriteError, BlockingIOError):
            _wait(sock, read=False)
            continue
        view = view[sent:]


def _wait(sock: socket.socket, *, read: bool) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ if read else selectors.EVENT_WRITE)
        if not sel.select(timeout=30):
            raise TimeoutError("peer stopped reading")


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _upstream_address(params: dict[str, str]) -> tuple[int, object]:
    host = (params.get("hostaddr") or params.get("host") or "/tmp").split(",")[0]
    port = int((params.get("port") or "5432").split(",")[0])
    if host.startswith("/"):
        return socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port)


def _self_signed(directory: Path, host: str) -> tuple[str, str, str]:
    """A P-256 key and a self-signed certificate for localhost and ``host``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rds-proxy-stand-in")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        ip = ipaddress.ip_address(host)
        if str(ip) != "127.0.0.1":
            names.append(x509.IPAddress(ip))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_text(cert_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path), cert_pem


if __name__ == "__main__":  # a manual check: python -m devstack.rdsproxy DSN
    with ProxyStandIn(sys.argv[1]) as proxy:
        print(proxy.dsn(), flush=True)
        threading.Event().wait()
