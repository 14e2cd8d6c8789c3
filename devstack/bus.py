"""A local EventBridge: moto's server in a thread of this process, the
registry's bus, and a catch-all rule feeding an SQS queue that a watcher
drains to show every event as it is published.

The functions publish exactly as in AWS (boto3, PutEvents on
EVENT_BUS_NAME); only AWS_ENDPOINT_URL points them here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from devstack import harness

QUEUE = "registry-local-console"


class LocalEventBridge:
    def __init__(self, bus_name: str, port: int = 0, host: str = "127.0.0.1"):
        self.bus_name = bus_name
        self.endpoint, self._stop_server = harness.start_moto(port, host)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        try:
            events, self._sqs = harness.moto_client("events", self.endpoint), harness.moto_client("sqs", self.endpoint)
            # Catch-all: an empty prefix matches every source.
            self.queue_url = harness.tap_bus(events, self._sqs, bus_name, QUEUE, {"source": [{"prefix": ""}]})
        except BaseException:
            self._stop_server()
            raise

    def drain(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Events delivered to the console queue since the last call."""
        return harness.drain_queue(self._sqs, self.queue_url, wait_seconds)

    def watch(self, show: Callable[[dict[str, Any]], None]) -> None:
        """Call ``show`` with every event, in a thread, until stop()."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    for event in self.drain(wait_seconds=1):
                        show(event)
                except Exception as err:  # noqa: BLE001 - keep watching; moto is in-process
                    if not self._stop.is_set():
                        print(f"event watcher: {err!r}", flush=True)
                        self._stop.wait(1)

        self._watcher = threading.Thread(target=loop, name="event-watcher", daemon=True)
        self._watcher.start()

    def stop(self, show: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Stop watching (showing what is still queued) and stop the server."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if show is not None:
            try:
                for _ in range(100):  # bounded: at most 1000 late events
                    batch = self.drain()
                    if not batch:
                        break
                    for event in batch:
                        show(event)
            except Exception:  # noqa: BLE001, S110 - best effort on the way out
                pass
        self._stop_server()
