"""Cold start: a fresh interpreter from importing the heartbeat function's
module to the response to its first heartbeat, against a fresh interpreter
that only runs ``import boto3, pydantic, psycopg2, redis``.

Each child measures itself with time.perf_counter (so interpreter start-up,
identical for both, is left out) and writes its figures to a file. The
runs alternate (baseline, heartbeat, baseline, ...) after one discarded
warm-up of each, so both see the same page cache. The heartbeat child
talks to the running Postgres and Redis and answers a steady heartbeat
(nothing changed, so nothing to publish): the path most invocations take.

``python -X importtime`` of the heartbeat module names what the import
costs.

``measure_init`` (section "init") measures the built artifacts instead:
each function's init duration from the packaged zip under the Lambda
runtime client (devstack/built.py), with the layer as built (hash-based
.pyc), without .pyc, and with timestamp .pyc made stale by the zip's 1980
dates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_ENV, log, summary
from devstack import harness

HEARTBEAT_APP = harness.FUNCTIONS_DIR / "heartbeat" / "app.py"

BASELINE = """
import json, sys, time
t0 = time.perf_counter()
import boto3, pydantic, psycopg2, redis
t1 = time.perf_counter()
json.dump({"total": t1 - t0, "modules": len(sys.modules)}, open(sys.argv[1], "w"))
"""

# The child loads the function and builds its context itself instead of
# importing devstack.harness (load_function, LambdaContext): the harness's
# own imports (dataclasses, datetime, urllib.parse ...) would be counted in
# the measured cold start, or, imported before t0, would make the
# function's import look cheaper than it is.
HEARTBEAT = """
import json, sys, time
t0 = time.perf_counter()
import importlib.util
sys.path.insert(0, sys.argv[3])
spec = importlib.util.spec_from_file_location("app", sys.argv[4])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
t1 = time.perf_counter()

class Context:
    function_name = "workspace-registry-heartbeat"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:workspace-registry-heartbeat"
    memory_limit_in_mb = 1024
    aws_request_id = "cold-start"
    log_group_name = "/aws/lambda/workspace-registry-heartbeat"
    log_stream_name = "bench"
    @staticmethod
    def get_remaining_time_in_millis():
        return 30000

event = json.loads(open(sys.argv[2]).read())
first = app.lambda_handler(event, Context())
t2 = time.perf_counter()
second = app.lambda_handler(event, Context())
t3 = time.perf_counter()
json.dump({
    "total": t2 - t0, "import": t1 - t0, "first_call": t2 - t1, "second_call": t3 - t2,
    "status": [first["statusCode"], second["statusCode"]],
    "modules": len(sys.modules),
    "top_level": sorted({m.split(".")[0] for m in sys.modules}),
    "heavy": {m: m in sys.modules for m in ("boto3", "botocore.client", "botocore.session", "aws_xray_sdk.core")},
}, open(sys.argv[1], "w"))
"""

IMPORT_ONLY = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("app", sys.argv[2])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
"""


def _child_env(database_url: str, redis_url: str) -> dict[str, str]:
    # A steady heartbeat publishes nothing; should one ever try, it fails
    # fast on a closed loopback port instead of reaching AWS.
    env = harness.child_env(endpoint="http://127.0.0.1:9", database_url=database_url, redis_url=redis_url)
    env.update(BENCH_ENV)
    env["POWERTOOLS_LOG_LEVEL"] = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO")
    return env


def _python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """A fresh interpreter; its stderr is kept (its error, or -X importtime's report)."""
    return subprocess.run(
        [sys.executable, *args], check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120
    )


def _run_child(code: str, args: list[str], env: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as out:
        path = out.name
    try:
        done = _python(["-c", code, path, *args], env)
        if done.returncode != 0:
            raise RuntimeError(f"cold-start child failed ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(Path(path).read_text())
    finally:
        os.unlink(path)


def import_profile(env: dict[str, str], top: int = 12) -> dict:
    """``-X importtime`` of the heartbeat module: the heaviest imports."""
    done = _python(["-X", "importtime", "-c", IMPORT_ONLY, str(harness.LAYER_DIR), str(HEARTBEAT_APP)], env)
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    # Cumulative time of each top-level package, counted where it is first
    # imported (a package imported inside another is charged to the outer one
    # in the tree, so also sum the self time per top-level name).
    by_package: dict[str, int] = {}
    for self_us, _, _, name in rows:
        root = name.split(".")[0]
        by_package[root] = by_package.get(root, 0) + self_us
    total_self = sum(by_package.values())
    packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    modules = sorted(rows, key=lambda r: -r[1])
    # The biggest subtrees that are not just the parents of bigger ones.
    heaviest = [{"module": name, "cumulative_ms": cum / 1000, "self_ms": self_us / 1000} for self_us, cum, _, name in modules[: top * 2]]
    return {
        "self_time_total_ms": total_self / 1000,
        "by_top_level_package_ms": [{"package": p, "self_ms": us / 1000} for p, us in packages],
        "heaviest_cumulative": heaviest,
        "modules_imported": len(rows),
    }


def measure(database_url: str, redis_url: str, event_path: Path, runs: int, warmup: bool = True) -> dict:
    env = _child_env(database_url, redis_url)
    heartbeat_args = [str(event_path), str(harness.LAYER_DIR), str(HEARTBEAT_APP)]
    log(f"cold start: {runs} fresh interpreters each" + (" (plus one warm-up)" if warmup else ""))
    if warmup:
        _run_child(BASELINE, [], env)
        _run_child(HEARTBEAT, heartbeat_args, env)
    baseline, heartbeat = [], []
    for _ in range(runs):
        baseline.append(_run_child(BASELINE, [], env))
        heartbeat.append(_run_child(HEARTBEAT, heartbeat_args, env))
    bad = [h["status"] for h in heartbeat if h["status"] != [200, 200]]
    if bad:
        raise RuntimeError(f"cold-start heartbeat did not answer 200: {bad[:3]}")
    base = summary([b["total"] for b in baseline])
    total = summary([h["total"] for h in heartbeat])
    top_level = heartbeat[-1]["top_level"]
    result = {
        "runs": runs,
        "baseline_import": base,
        "heartbeat_total": total,
        "heartbeat_import": summary([h["import"] for h in heartbeat]),
        "heartbeat_first_call": summary([h["first_call"] for h in heartbeat]),
        "heartbeat_second_call": summary([h["second_call"] for h in heartbeat]),
        "baseline_modules": baseline[-1]["modules"],
        "heartbeat_modules": heartbeat[-1]["modules"],
        # Powertools imports the botocore package itself (a few hundred us,
        # for its user agent); what costs is botocore.client/session and boto3.
        "heartbeat_heavy_imports": heartbeat[-1]["heavy"],
        "heartbeat_imports_boto3": any(heartbeat[-1]["heavy"][m] for m in ("boto3", "botocore.client", "botocore.session")),
        "heartbeat_top_level_packages": [m for m in top_level if not m.startswith("_")],
        "ratio_median": total["median_ms"] / base["median_ms"],
        "target_ratio": 1.0,
    }
    result["target_met"] = result["ratio_median"] <= 1.0
    result["importtime"] = import_profile(env)
    return result


# ------------------------------------------- init of the packaged artifacts

# The layer as shipped, and the two ways it could have been shipped.
INIT_VARIANTS = {
    "hash_pyc": "as built: unchecked-hash .pyc (layers/shared/Makefile)",
    "no_pyc": "no .pyc (what BuildMethod: python3.13 ships)",
    "timestamp_pyc": "timestamp .pyc, stale after sam package's 1980 dates",
}


def _layer_variants(build, variants: list[str], work: Path) -> dict[str, Path]:
    """Each variant's layer python/, from the packaged zip (SAM's zip,
    1980 dates), extracted read-only as Lambda does."""
    from devstack import built

    layers = {}
    zipped = build.zips / "SharedLayer.zip"
    for variant in variants:
        if variant == "hash_pyc":
            layers[variant] = build.layer_dir
            continue
        plain = work / "no_pyc"
        if not plain.exists():
            built.extract_like_lambda(zipped, plain, skip=lambda name: "__pycache__/" in name)
        if variant == "no_pyc":
            layers[variant] = plain / "python"
            continue
        # timestamp_pyc: compiled the default way in a writable copy, then
        # zipped by SAM and extracted again, as `sam package` + Lambda would.
        staging = work / "timestamp_build"
        shutil.copytree(plain, staging)
        # Writable, and dated now as a build's fresh files are (the copy kept
        # the zip's 1980 dates, which would make the .pyc match again).
        now = time.time()
        for path in [staging, *staging.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
                os.utime(path, (now, now))
        subprocess.run(
            [str(build.python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "timestamp", str(staging / "python")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        built.sam_zip([(staging, work / "timestamp")])
        built.extract_like_lambda(work / "timestamp.zip", work / "timestamp_pyc")
        shutil.rmtree(staging)
        layers[variant] = work / "timestamp_pyc" / "python"
    return layers


def measure_init(database_url: str, redis_url: str, runs: int, *, functions: list[str] | None = None, variants: list[str] | None = None) -> dict:
    """Init duration of each built function from the packaged artifact
    under the Lambda runtime client: process start to its first poll for
    an event (what Lambda reports as Init Duration), median of ``runs``
    fresh processes per function and layer variant, interleaved, after
    one discarded warm-up of each."""
    from devstack import built

    try:
        build = built.build(log=lambda line: log(f"init: {line}"))
    except built.Unavailable as why:
        return {"skipped": str(why)}
    variants = variants or list(INIT_VARIANTS)
    names = functions or sorted(build.functions)
    env_vars = {"Parameters": {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}}
    work = Path(tempfile.mkdtemp(prefix="registry-bench-init-"))
    try:
        log(f"init: preparing the layer variants {', '.join(variants)}")
        layers = _layer_variants(build, variants, work)
        samples: dict[str, dict[str, list[float]]] = {n: {v: [] for v in variants} for n in names}
        # POWERTOOLS_LOG_LEVEL from the shell as sam local would; INFO by default.
        shell = {"POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO")}
        template = built.load_template()
        variables = {n: built.sam_local_env(build.functions[n], env_vars, shell_env=shell, template=template) for n in names}
        log(f"init: {runs} fresh runtime processes per function and variant ({len(names)} functions x {len(variants)} variants), plus a warm-up")
        for round_ in range(runs + 1):
            for name in names:
                for variant in variants:
                    container = built.Container(build, build.functions[name], variables[name], layer_dir=layers[variant])
                    try:
                        seconds = container.start(timeout=120)
                    finally:
                        container.close()
                    if round_:  # the first round warms the page cache
                        samples[name][variant].append(seconds)
        result: dict[str, Any] = {
            "architecture": build.architecture,
            "python": str(build.python),
            "runs": runs,
            "variants": {v: INIT_VARIANTS[v] for v in variants},
            "layer_zip_bytes": build.info.get("sizes", {}).get("SharedLayer"),
            "functions": {},
        }
        for name in names:
            figures = {v: summary(samples[name][v]) for v in variants}
            row: dict[str, Any] = {"init": figures}
            if "no_pyc" in figures and "hash_pyc" in figures:
                row["speedup_median"] = figures["no_pyc"]["median_ms"] / figures["hash_pyc"]["median_ms"]
            result["functions"][name] = row
        return result
    finally:
        built.remove_tree(work)


def init_table(result: dict) -> str:
    """The init figures as a text table (make bench prints it)."""
    if "skipped" in result:
        return f"Init of the packaged artifacts: skipped ({result['skipped']})"
    variants = list(result["variants"])
    head = f"Init of the packaged artifacts under awslambdaric ({result['architecture']}, Python 3.13, median of {result['runs']} fresh processes, ms)"
    lines = [head, "  " + f"{'function':<16}" + "".join(f"{v:>16}" for v in variants) + f"{'no_pyc/hash':>14}"]
    for name, row in result["functions"].items():
        cells = "".join(f"{row['init'][v]['median_ms']:>16.0f}" for v in variants)
        speedup = f"{row['speedup_median']:>13.1f}x" if "speedup_median" in row else ""
        lines.append(f"  {name:<16}{cells}{speedup}")
    for v, meaning in result["variants"].items():
        lines.append(f"  {v}: {meaning}")
    return "\n".join(lines)
