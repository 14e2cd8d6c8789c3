"""Loopback TCP relays to the embedded servers' Unix sockets.

The embedded Postgres and Redis listen on Unix sockets only. A function run
by ``sam local invoke`` lives in a Docker container and needs TCP, so
``make run ARGS=--sam`` opens these relays on fixed loopback ports (the
ones events/env.json names). Nothing here is used otherwise.
"""

from __future__ import annotations

import socket
import threading


class UnixRelay:
    """Accept on 127.0.0.1:port, forward each connection to a Unix socket."""

    def __init__(self, port: int, unix_path: str, host: str = "127.0.0.1"):
        self.unix_path = unix_path
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.address = self._listener.getsockname()[:2]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(self.unix_path)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                for s in (src, dst):
                    if s in self._open:
                        self._open.discard(s)
                        s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._open)
            self._open.clear()
        try:
            # Wakes the accept() of the relay thread (close alone does not on Linux).
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
