"""Powertools Logger, Tracer and Metrics, one of each per container.

The service name and metrics namespace come from the standard Powertools
variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE); the
defaults here make a local run and the tests work without them.

The Tracer is built only when tracing is on. Powertools' Tracer imports the
X-Ray SDK (and through it botocore's session) when it is created, even when
disabled: about 130 ms of a cold start that buys nothing without a daemon.
Lambda sets AWS_XRAY_DAEMON_ADDRESS only for functions with active tracing,
so that is the switch, with POWERTOOLS_TRACE_DISABLED still able to turn it
off.
"""

from __future__ import annotations

import functools
import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "workspace-registry"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "WorkspaceRegistry"


class _NoTracer:
    """Tracer's decorators as pass-throughs, for when nothing records traces."""

    def capture_lambda_handler(self, handler=None, **_options):
        if handler is None:
            return functools.partial(self.capture_lambda_handler, **_options)
        return handler

    def capture_method(self, method=None, **_options):
        if method is None:
            return functools.partial(self.capture_method, **_options)
        return method

    def put_annotation(self, key, value) -> None:
        pass


def tracing_enabled() -> bool:
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("AWS_XRAY_DAEMON_ADDRESS")) and not disabled


def _tracer():
    if tracing_enabled():
        from aws_lambda_powertools import Tracer

        return Tracer(service=SERVICE)
    return _NoTracer()


logger = Logger(service=SERVICE)
tracer = _tracer()
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit="Count", value=value)
