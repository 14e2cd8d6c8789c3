"""CloudFormation custom resource: apply the SQL migrations on every deploy.

The same SQL and the same code as ``make migrate`` (registry.migrate.apply):
files already applied are skipped, so a re-run is a no-op. CloudFormation
sends Create on the first deploy and Update whenever the resource's
properties change; the template passes the shared layer's version, which
changes whenever a migration file (they ship in the layer) changes.

A custom resource that never answers hangs the stack for up to its
ServiceTimeout, so this handler always answers: SUCCESS or FAILED (with the
reason CloudFormation shows in its events), on every path, before the
function's own time-out. The migration runs in a worker thread with a
deadline, and the database is told the same deadline (a transaction-local
statement_timeout, see registry.migrate) so it does not keep working after
FAILED was reported.

Delete succeeds without touching the database: the schema and its rows
outlive the stack (and may be a platform database the stack never owned).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import psycopg2.extensions

from registry import dbsecret, migrate
from registry.observability import logger
from registry.settings import get_settings

# One physical resource for the schema, whatever the request: a changing id
# would make CloudFormation send a Delete for the "old" one after an update.
PHYSICAL_ID = "workspace-registry-schema"
# Seconds kept back from the Lambda time-out to send the answer.
RESPONSE_RESERVE_SECONDS = 15
# A DDL statement waits at most this long for a lock: a migration queued
# behind a long transaction would otherwise block every query behind it.
LOCK_TIMEOUT_MS = migrate.DEFAULT_LOCK_TIMEOUT_MS
PUT_ATTEMPTS = 3
PUT_TIMEOUT_SECONDS = 4
PUT_BACKOFF_SECONDS = 0.5  # 0.5 s, then 1 s: well inside RESPONSE_RESERVE_SECONDS
MAX_REASON = 1000  # the whole response must stay under CloudFormation's 4 KiB


class ResponseNotDelivered(Exception):
    """CloudFormation could not be told the outcome; raising lets Lambda's
    asynchronous retry run the (idempotent) handler again."""


def _database_dsn() -> str:
    # DATABASE_URL locally and in tests; in AWS the Secrets Manager secret.
    return get_settings().database_url or dbsecret.dsn()


def _redact(text: str, dsn: str | None) -> str:
    """Remove the password from a driver message before it is reported."""
    secrets = set()
    if dsn:
        try:
            password = psycopg2.extensions.parse_dsn(dsn).get("password")
            if password:
                secrets.add(password)
        except psycopg2.Error:
            pass
        secrets.update(m for m in re.findall(r"password\s*=\s*'?([^'\s]+)", dsn) if m)
        secrets.update(m for m in re.findall(r"://[^:/@]*:([^@]+)@", dsn) if m)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _migrate(deadline: float) -> tuple[str, str, dict]:
    """Run the migrations in a worker thread; give up at the deadline."""
    budget_ms = int((deadline - time.monotonic()) * 1000)
    if budget_ms < 1000:
        return "FAILED", "no time left to run the migrations (raise the function's time-out)", {}
    dsn = _database_dsn()
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        # The driver's message quotes the string, password included.
        return "FAILED", "the database connection string is not valid", {}
    outcome: dict = {}

    def work():
        try:
            # The server gives up at the same deadline, so a statement is never
            # still running (or waiting for a lock) after FAILED was reported.
            outcome["applied"] = migrate.apply(dsn, statement_timeout_ms=budget_ms, lock_timeout_ms=min(LOCK_TIMEOUT_MS, budget_ms))
        except BaseException as err:  # reported, never raised from the thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="migrate", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        return (
            "FAILED",
            f"migrations did not finish within {budget_ms // 1000} s; each file is one transaction, so none is half-applied",
            {},
        )
    if "error" in outcome:
        err = outcome["error"]
        first_line = (str(err).strip().splitlines() or [""])[0]
        reason = _redact(f"migration failed: {type(err).__name__}: {first_line}", dsn)
        logger.error("migration failed", extra={"reason": reason})
        return "FAILED", reason, {}
    applied = outcome["applied"]
    logger.info("migrations applied", extra={"applied": applied})
    summary = ", ".join(applied) if applied else "schema is up to date"
    return "SUCCESS", summary, {"Applied": ",".join(applied), "AppliedCount": str(len(applied))}


def _handle(event: dict, context) -> tuple[str, str, dict]:
    request = event.get("RequestType")
    if request == "Delete":
        return "SUCCESS", "schema kept: deleting the stack never drops tables", {}
    if request not in ("Create", "Update"):
        return "FAILED", f"unknown RequestType {request!r}", {}
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - RESPONSE_RESERVE_SECONDS
    return _migrate(deadline)


def _send(event: dict, context, status: str, reason: str, data: dict) -> None:
    """PUT the result to the pre-signed S3 URL CloudFormation gave us."""
    url = event.get("ResponseURL")
    if not url:
        raise ResponseNotDelivered("the request has no ResponseURL")
    reason = reason or f"see CloudWatch log stream {getattr(context, 'log_stream_name', '?')}"
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
            "StackId": event.get("StackId"),
            "RequestId": event.get("RequestId"),
            "LogicalResourceId": event.get("LogicalResourceId"),
            "NoEcho": False,
            "Data": data,
        }
    ).encode()
    # The URL is signed without a content type: sending one breaks the signature.
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))})
    last_error = None
    for attempt in range(PUT_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=PUT_TIMEOUT_SECONDS) as answer:
                if 200 <= answer.status < 300:
                    return
                last_error = f"HTTP {answer.status}"
        except urllib.error.HTTPError as err:
            last_error = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last_error = type(err).__name__
        if attempt + 1 < PUT_ATTEMPTS:
            time.sleep(PUT_BACKOFF_SECONDS * (attempt + 1))
    raise ResponseNotDelivered(f"CloudFormation response not delivered: {last_error}")


@logger.inject_lambda_context
def lambda_handler(event, context):
    try:
        status, reason, data = _handle(event, context)
    except Exception as err:  # whatever went wrong, CloudFormation hears about it
        logger.exception("custom resource handler failed")
        status, reason, data = "FAILED", f"{type(err).__name__}: {err}", {}
    logger.info("custom resource answer", extra={"request_type": event.get("RequestType"), "status": status, "reason": reason[:200]})
    _send(event, context, status, reason, data)
    return {"Status": status, "Reason": reason}
