"""A local EventBridge: moto's server in a thread of this process, the
registry's bus, and a catch-all rule feeding an SQS queue that a watcher
drains to show every event as it is published.

The functions publish exactly as in AWS (boto3, PutEvents on
EVENT_BUS_NAME); only AWS_ENDPOINT_URL points them here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

QUEUE = "registry-local-console"
RULE = "registry-local-console-all"


class LocalEventBridge:
    def __init__(self, bus_name: str, port: int = 0, host: str = "127.0.0.1"):
        from moto.server import ThreadedMotoServer

        # moto's HTTP server logs every request (the watcher polls once a second).
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.bus_name = bus_name
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        try:
            self._events, self._sqs = self._client("events"), self._client("sqs")
            self._events.create_event_bus(Name=bus_name)
            self.queue_url = self._sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
            arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            # Catch-all: an empty prefix matches every source.
            self._events.put_rule(Name=RULE, EventBusName=bus_name, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
            self._events.put_targets(Rule=RULE, EventBusName=bus_name, Targets=[{"Id": "console", "Arn": arn}])
        except BaseException:
            self._server.stop()
            raise

    def _client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def drain(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Events delivered to the console queue since the last call."""
        response = self._sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds)
        out = []
        for message in response.get("Messages", []):
            self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            try:
                out.append(json.loads(message["Body"]))
            except ValueError:
                out.append({"detail-type": "?", "detail": {"raw": message["Body"]}})
        return out

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
        self._server.stop()
