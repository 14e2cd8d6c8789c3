"""Powertools Logger, Tracer and Metrics, one of each per container.

The service name and metrics namespace come from the standard Powertools
variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE); the
defaults here make a local run and the tests work without them.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "workspace-registry"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "WorkspaceRegistry"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit="Count", value=value)
