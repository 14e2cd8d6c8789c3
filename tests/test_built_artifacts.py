"""The built artifacts under the Lambda runtime client: what Lambda runs.

`sam build` (SAM CLI in .venv-sam, Python 3.13 from pyenv) builds the
template for THIS machine's architecture (Architecture=x86_64 here: the
default arm64 build cannot run on an x86 machine; the arm64 build differs
only in the wheels' binaries). Each function folder and the layer are then
zipped by SAM's own packaging code (entries dated 1980-01-01, as `sam
package` uploads them) and extracted with those dates, read-only. Each
function runs from there under `awslambdaric` (Lambda's runtime client,
kept outside the artifact like /var/runtime), fed by the Runtime API
emulator (devstack/runtime_api.py), with exactly task root, layer,
runtime client and the standard library on sys.path (devstack/built.py).

Two modes:
- env.json: events/env.json's variables as `sam local invoke --env-vars`
  applies them to the template's, pointed at this session's servers;
- AWS: the variables CloudFormation would set (DATABASE_SECRET_ARN,
  DATABASE_HOST, rediss://...), the secret in moto's Secrets Manager, TLS
  to Postgres through the RDS Proxy stand-in, TLS to Redis with the
  certificate really verified.

Asserted: the answers, the rows, the liveness keys, the events published
(moto EventBridge -> SQS), and that every module came from the artifact
(task root or layer), the runtime client or the standard library, with no
layer source compiled at import (the precompiled .pyc were used).

Without Python 3.13 these tests skip with that reason; nothing else skips.
The build is cached under .aws-sam/built/ (`make test` starts it in the
background first, so it overlaps the other tests).
"""

from __future__ import annotations

import http.client
import json
import struct
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from conftest import custom_resource_event, sample_event, unexpected_pins

from devstack import built, harness
from devstack.runtime_api import InitError, RuntimeApi

REPO = Path(__file__).resolve().parent.parent
LAYER_SOURCE = REPO / "layers" / "shared"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def artifacts() -> built.Build:
    try:
        return built.build(log=lambda line: print(f"[built] {line}"))
    except built.Unavailable as why:
        pytest.skip(f"cannot build or run the Lambda artifacts on this machine: {why}")


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto as an HTTP endpoint for the runtime processes. It shares the
    session's moto state (conftest's `aws` bus, rule and queue)."""
    endpoint, stop = harness.start_moto()
    yield endpoint
    stop()


class Containers:
    """One runtime process per function, started on first use."""

    def __init__(self, build: built.Build, variables, **options):
        self.build = build
        self.variables = variables
        self.options = options
        self.started: dict[str, built.Container] = {}

    def __getitem__(self, name: str) -> built.Container:
        if name not in self.started:
            function = self.build.functions[name]
            self.started[name] = built.Container(self.build, function, self.variables(function), **self.options)
        return self.started[name]

    def warm(self) -> dict[str, float]:
        """Start every function's runtime at once (cold starts in parallel);
        their init seconds."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(len(self.build.functions)) as pool:
            futures = {name: pool.submit(self[name].start) for name in self.build.functions}
        return {name: future.result() for name, future in futures.items()}

    def invoke(self, name: str, event) -> dict:
        outcome = self[name].invoke(event, timeout=30)
        assert outcome.ok, f"{name}: {outcome.error_type} {outcome.payload}\n{self[name].log_tail()}"
        return outcome.payload

    def stop(self) -> dict[str, dict]:
        """End every runtime (in parallel); each one's report."""
        import concurrent.futures

        def end(container):
            report = container.stop()
            container.close()
            return report

        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.started))) as pool:
            futures = {name: pool.submit(end, container) for name, container in self.started.items()}
        return {name: future.result() for name, future in futures.items()}


def read_event(resource: str, ws: str, caller: str, token: str) -> dict:
    """The sample event of a read route (discover, peers) for workspace ws."""
    return harness.api_event(resource, params={"id": ws}, headers={"X-Workspace-ID": caller}, token=token)


def run_every_function(fns: Containers, pg, rds, aws, cfn) -> dict:
    """Register, heartbeat, update the card, sweep, deregister and migrate
    through the built functions; assert answers, rows, keys and events."""
    assert all(0 < seconds < 60 for seconds in fns.warm().values())
    ws = str(uuid.uuid4())
    answer = fns.invoke(
        "register", harness.api_event("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "built"}})
    )
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    assert body["status"] == "registered" and body["auth_token"]
    token = body["auth_token"]
    assert rds.get(f"ws:{ws}") == "online"

    answer = fns.invoke(
        "heartbeat",
        harness.api_event(
            "/registry/heartbeat",
            {"workspace_id": ws, "error_rate": 0.0, "active_tasks": 1, "current_task": "build", "uptime_seconds": 5},
            token=token,
        ),
    )
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"status": "ok"}, answer
    answer = fns.invoke("heartbeat", harness.api_event("/registry/heartbeat", {"workspace_id": ws}, token="wrong-token"))
    assert answer["statusCode"] == 401, answer

    answer = fns.invoke(
        "update_card", harness.api_event("/registry/update-card", {"workspace_id": ws, "agent_card": {"name": "built", "skills": ["zip"]}}, token=token)
    )
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"status": "updated"}, answer
    with pg.cursor() as cur:
        cur.execute("SELECT status, agent_card->>'name', current_task FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("online", "built", "build")

    # The read side: a root-level sibling discovered (the fast path's entry
    # kept in Redis), listed, and checked.
    peer = str(uuid.uuid4())
    answer = fns.invoke(
        "register", harness.api_event("/registry/register", {"id": peer, "url": "http://localhost:8001", "agent_card": {"name": "peer"}})
    )
    assert answer["statusCode"] == 200, answer
    answer = fns.invoke("discover", read_event("/registry/discover/{id}", peer, ws, token))
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"id": peer, "url": "http://localhost:8001", "name": peer}, answer
    assert answer["multiValueHeaders"]["ETag"] and rds.get(f"registry:discover:{ws}:{peer}")
    answer = fns.invoke("peers", read_event("/registry/{id}/peers", ws, ws, token))
    assert answer["statusCode"] == 200 and peer in [p["id"] for p in json.loads(answer["body"])], answer
    answer = fns.invoke("check_access", harness.api_event("/registry/check-access", {"caller_id": ws, "target_id": peer}, token=token))
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"allowed": True}, answer

    swept = fns.invoke(
        "liveness_sweep",
        harness.scheduled_event(),
    )
    assert swept["skipped"] is False and swept["fleet"] >= 1 and swept["expired"] == 0, swept

    # The operators' reads (IAM-authorized sample events, as API Gateway passes them).
    for name, event in (
        ("admin_summary", sample_event("admin_summary.json")),
        ("admin_workspaces", harness.api_event("/admin/workspaces", query={})),
        ("admin_workspace", harness.api_event("/admin/workspaces/{id}", params={"id": ws})),
        ("admin_events", harness.api_event("/admin/events", query={"workspace_id": ws})),
    ):
        answer = fns.invoke(name, event)
        assert answer["statusCode"] == 200, (name, answer)
    assert ws in answer["body"]  # the feed of this workspace's events
    assert ws in fns.invoke("admin_workspaces", harness.api_event("/admin/workspaces", query={}))["body"]

    answer = fns.invoke("deregister", harness.api_event("/registry/deregister", {"workspace_id": ws}, token=token))
    assert answer["statusCode"] == 200, answer
    assert rds.get(f"ws:{ws}") is None

    fns.invoke("migrate", custom_resource_event("Create", cfn.url))
    [reply] = cfn.answers
    assert reply["Status"] == "SUCCESS", reply
    assert reply["PhysicalResourceId"] == "workspace-registry-schema"

    # Every event the functions published reached the bus (moto -> SQS).
    deadline = time.monotonic() + 5
    seen: list[dict] = []
    while time.monotonic() < deadline:
        seen += [e for e in aws.received() if e.get("detail", {}).get("workspace_id") == ws]
        kinds = {e["detail-type"] for e in seen}
        if {"WORKSPACE_ONLINE", "TASK_UPDATED", "AGENT_CARD_UPDATED", "WORKSPACE_OFFLINE"} <= kinds:
            break
        time.sleep(0.2)
    kinds = [e["detail-type"] for e in seen]
    assert {"WORKSPACE_ONLINE", "TASK_UPDATED", "AGENT_CARD_UPDATED", "WORKSPACE_OFFLINE"} <= set(kinds), kinds
    assert all(e["source"] == "workspace-registry" for e in seen)
    return {"workspace": ws, "events": kinds}


def assert_ran_from_the_artifact(build: built.Build, reports: dict[str, dict]) -> None:
    assert set(reports) == set(build.functions), reports.keys()
    for name, report in reports.items():
        assert report is not None, f"{name}: no report (the runtime did not end its loop cleanly)"
        function = build.functions[name]
        # Nothing imported from outside: task root, layer, runtime client, stdlib.
        assert report["outside"] == {}, (name, report["outside"])
        assert report["counts"].get("task") == 1 and report["counts"].get("layer", 0) > 50, (name, report["counts"])
        assert report["counts"].get("runtime", 0) > 0, (name, report["counts"])
        assert report["path"][:3] == [str(function.task_root), str(build.layer_dir), str(build.runtime_dir)], report["path"]
        assert all(p.startswith(str(Path(build.python).parent.parent / "lib")) for p in report["path"][3:]), report["path"]
        assert report["no_site"] and report["dont_write_bytecode"], name
        assert report["python"].startswith("3.13"), report["python"]
        assert "awslambdaric" in report["modules"] and "registry" in report["modules"], name
        # The layer's modules came from its precompiled .pyc: no layer source was read.
        layer_sources = [s for s in report["sources_read"] if s.startswith(str(build.layer_dir))]
        assert layer_sources == [], (name, layer_sources[:5])
        assert f"{function.task_root}/app.py" in report["sources_read"], name


# --------------------------------------------------------- the build itself


def test_build_is_for_this_machine_and_packaged_like_sam_package(artifacts):
    arch = built.machine_architecture()
    assert artifacts.architecture == arch
    cpu = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    binaries = sorted(p.name for p in artifacts.layer_dir.rglob("*.so"))
    assert any(name.startswith("_psycopg") for name in binaries) and any(name.startswith("_pydantic_core") for name in binaries)
    assert all(f"-{cpu}-linux-gnu" in name for name in binaries if ".cpython-" in name), binaries
    # SAM honoured the Architecture parameter override: its build log names
    # each function's architecture.
    log = (artifacts.root / "sam-build.log").read_text()
    template = built.load_template(artifacts.sam_build_dir / "template.yaml")
    for name, function in artifacts.functions.items():
        assert template["Resources"][function.logical_id]["Properties"]["CodeUri"] == function.logical_id, name
        assert f"architecture: {arch} functions: {function.logical_id}" in log, (name, log)
        assert (function.task_root / "app.py").is_file()
    # SAM's zip: every entry dated 1980-01-01, and extracted with that date.
    with zipfile.ZipFile(artifacts.zips / "SharedLayer.zip") as zf:
        dates = {info.date_time for info in zf.infolist()}
    assert dates == {(1980, 1, 1, 0, 0, 0)}
    assert time.gmtime((artifacts.layer_dir / "registry" / "db.py").stat().st_mtime).tm_year in (1979, 1980)
    # Read-only, like /opt and /var/task.
    assert not (artifacts.layer_dir / "registry" / "db.py").stat().st_mode & 0o222


def test_layer_ships_the_locked_packages_precompiled_with_hash_based_pyc(artifacts):
    layer = artifacts.layer_dir
    sources = [p for p in layer.rglob("*.py")]
    assert len(sources) > 500
    missing, not_hash = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.exists():
            missing.append(str(source.relative_to(layer)))
            continue
        _magic, flags = struct.unpack("<4sI", pyc.read_bytes()[:8])
        if flags != 0b01:  # hash-based, source not checked (PEP 552)
            not_hash.append(str(source.relative_to(layer)))
    assert missing == [] and not_hash == [], (missing[:5], not_hash[:5])
    # The registry package is the repository's, without its own caches.
    shipped = sorted(str(p.relative_to(layer)) for p in (layer / "registry").rglob("*") if "__pycache__" not in p.parts and p.is_file())
    source = sorted(
        str(p.relative_to(LAYER_SOURCE)) for p in (LAYER_SOURCE / "registry").rglob("*") if "__pycache__" not in p.parts and p.is_file()
    )
    assert shipped == source
    # Exactly the versions requirements.lock pins, and no console scripts.
    pins = dict(line.split(" ")[0].split("==") for line in (LAYER_SOURCE / "requirements.lock").read_text().splitlines() if "==" in line)
    installed = {}
    for info in layer.glob("*.dist-info"):
        name, version = info.name[: -len(".dist-info")].rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
    assert installed == {name.lower(): version for name, version in pins.items()}
    assert not (layer / "bin").exists()


def test_timestamp_pyc_are_stale_in_a_sam_package_zip_and_hash_based_ones_are_used(artifacts, tmp_path):
    """Why the layer ships hash-based .pyc: the same module compiled both
    ways, zipped by SAM's zip function (1980 dates), extracted as Lambda
    does and imported by Python 3.13 with -B: only the timestamp one makes
    Python read (and compile) the source again."""
    results = {}
    for mode in ("timestamp", "unchecked-hash"):
        folder = tmp_path / mode / "build"
        folder.mkdir(parents=True)
        (folder / "probe.py").write_text("VALUE = 42\n")
        subprocess.run([str(artifacts.python), "-m", "compileall", "-q", "--invalidation-mode", mode, str(folder)], check=True)
        sam_python = built.SAM_VENV / "bin" / "python"
        subprocess.run([str(sam_python), "-c", built._ZIP_WITH_SAM, str(folder), str(tmp_path / mode / "probe")], check=True)
        target = tmp_path / mode / "task"
        built.extract_like_lambda(tmp_path / mode / "probe.zip", target)
        code = (
            "import sys; reads = []\n"
            "sys.addaudithook(lambda e, a: reads.append(a[0]) if e == 'open' and str(a[0]).endswith('probe.py') else None)\n"
            "import probe; assert probe.VALUE == 42; print(len(reads))"
        )
        done = subprocess.run([str(artifacts.python), "-S", "-E", "-B", "-c", code], cwd=target, capture_output=True, text=True, check=True)
        results[mode] = int(done.stdout.strip())
        built.remove_tree(target)
    assert results == {"timestamp": 1, "unchecked-hash": 0}


# ------------------------------------------------------ mode 1: env.json


@pytest.fixture
def env_json_functions(artifacts, servers, aws, moto_endpoint):
    """events/env.json as `sam local invoke --env-vars` uses it, its
    addresses pointed at this session's Postgres, Redis and moto."""
    env_vars = json.loads((REPO / "events" / "env.json").read_text())
    env_vars["Parameters"].update({"DATABASE_URL": servers.database_url, "REDIS_URL": servers.redis_url, "AWS_ENDPOINT_URL": moto_endpoint})
    fns = Containers(artifacts, lambda f: built.sam_local_env(f, env_vars, shell_env={}), audit=True)
    yield fns
    fns.stop()


def test_every_function_answers_from_the_artifact_with_env_json(artifacts, env_json_functions, pg, rds, aws, cfn):
    run_every_function(env_json_functions, pg, rds, aws, cfn)
    # Each function was one warm sandbox: one cold start, then reused.
    assert {name: c.cold_starts for name, c in env_json_functions.started.items()} == {name: 1 for name in artifacts.functions}
    assert_ran_from_the_artifact(artifacts, env_json_functions.stop())


def test_env_json_is_applied_as_sam_local_invoke_applies_it(artifacts):
    heartbeat = artifacts.functions["heartbeat"]
    env = built.sam_local_env(
        heartbeat,
        {
            "Parameters": {"DATABASE_URL": "postgresql://x/y", "NOT_IN_TEMPLATE": "1"},
            heartbeat.logical_id: {"DATABASE_URL": "postgresql://own/db"},
        },
        shell_env={"LIVENESS_TTL_SECONDS": "60", "HOME": "/root"},
    )
    assert env["DATABASE_URL"] == "postgresql://own/db"  # the function's section wins
    assert "NOT_IN_TEMPLATE" not in env and "HOME" not in env  # only declared variables
    assert env["LIVENESS_TTL_SECONDS"] == "60"  # the shell's value of a declared variable
    assert env["DATABASE_SECRET_ARN"] == "" and env["REDIS_URL"] == ""  # unresolvable: ""
    assert env["DATABASE_NAME"] == "registry" and env["MOLECULE_DEPLOY_MODE"] == "self-hosted"  # parameter defaults


# ------------------------------------------------------------ mode 2: AWS


class AwsPath:
    """The stack's resources, stood in for: the database secret in moto's
    Secrets Manager, the RDS Proxy stand-in (TLS only, refuses startup
    options, records pinning statements) in front of the test Postgres,
    and a TLS front (ElastiCache's rediss://) to the test Redis with a
    certificate from a test CA."""

    def __init__(self, servers, moto_endpoint: str, directory: Path):
        import boto3
        import psycopg2.extensions

        from devstack.rdsproxy import ProxyStandIn

        self.proxy = ProxyStandIn(servers.database_url).start()
        upstream = psycopg2.extensions.parse_dsn(servers.database_url)
        self.dbname = upstream.get("dbname", "postgres")
        # The secret as RDS writes it: the cluster's host (DATABASE_HOST, the
        # proxy endpoint, replaces it) and no usable dbname (DATABASE_NAME).
        secret = {
            "engine": "postgres",
            "host": "registry.cluster-abc.us-east-1.rds.amazonaws.com",
            "port": self.proxy.address[1],
            "username": upstream.get("user", "postgres"),
            "password": upstream.get("password") or "trust-auth-ignores-it",
        }
        client = boto3.client("secretsmanager", region_name="us-east-1")
        self.secret_arn = client.create_secret(Name=f"registry/db-{uuid.uuid4()}", SecretString=json.dumps(secret))["ARN"]
        self.tls = built.make_test_ca(directory / "tls")
        redis_socket = servers.redis_url[len("unix://") :]
        self.redis_front = built.TlsFront(redis_socket, self.tls["cert"], self.tls["key"])
        self.moto_endpoint = moto_endpoint

    def variables(self, function: built.BuiltFunction, ca: Path | None = None) -> dict[str, str]:
        resources = {
            "DatabaseSecret": self.secret_arn,
            "DatabaseProxy.Endpoint": self.proxy.address[0],
            "Cache.Endpoint.Address": self.redis_front.address[0],
            "Cache.Endpoint.Port": self.redis_front.address[1],
            "EventBus": "workspace-registry",
        }
        variables = built.deployed_env(function, resources, parameter_overrides={"DatabaseName": self.dbname})
        # Only these two differ from AWS: moto answers for Secrets Manager and
        # EventBridge, and the test CA is the trust store (Lambda's is the
        # system's, which holds ElastiCache's CA).
        variables["AWS_ENDPOINT_URL"] = self.moto_endpoint
        variables["SSL_CERT_FILE"] = str(ca or self.tls["ca"])
        return variables

    def close(self):
        self.redis_front.close()
        self.proxy.stop()


@pytest.fixture
def aws_path(artifacts, servers, aws, moto_endpoint, tmp_path):
    stand_ins = AwsPath(servers, moto_endpoint, tmp_path)
    yield stand_ins
    stand_ins.close()


def test_every_function_answers_from_the_artifact_on_the_aws_path(artifacts, aws_path, pg, rds, aws, cfn):
    fns = Containers(artifacts, aws_path.variables, audit=True)
    try:
        variables = aws_path.variables(artifacts.functions["heartbeat"])
        assert variables["DATABASE_URL"] == "" and variables["DATABASE_SECRET_ARN"] == aws_path.secret_arn
        assert variables["REDIS_URL"] == f"rediss://{aws_path.redis_front.address[0]}:{aws_path.redis_front.address[1]}"
        run_every_function(fns, pg, rds, aws, cfn)
    finally:
        reports = fns.stop()
    # Every function reached Postgres through the proxy and none was refused
    # (no startup options; TLS). The request functions pinned nothing; the
    # migration only what the project accepts (conftest.unexpected_pins:
    # its SET LOCAL time-outs, in its own short session).
    proxy = aws_path.proxy
    assert proxy.refused == [], proxy.refused
    from registry.migrate import OUTSIDE_TRANSACTION_APPLICATION

    assert set(proxy.connections) <= {"workspace-registry", "workspace-registry-migrate", OUTSIDE_TRANSACTION_APPLICATION}, proxy.connections
    assert {"workspace-registry", "workspace-registry-migrate"} <= set(proxy.connections), proxy.connections
    assert sum(proxy.connections.values()) >= len(artifacts.functions), proxy.connections
    assert proxy.pins_of("workspace-registry") == []
    assert unexpected_pins(proxy) == [], proxy.pins
    # Redis only over TLS, the certificate verified against the CA.
    assert aws_path.redis_front.handshakes > 0 and aws_path.redis_front.failed_handshakes == 0
    assert_ran_from_the_artifact(artifacts, reports)


def test_redis_tls_verification_is_real_on_the_aws_path(artifacts, aws_path, rds, tmp_path):
    """With a trust store that does not hold the server's CA, the TLS
    handshake fails: no liveness key is written (the registration itself
    still succeeds, Redis being best effort)."""
    other_ca = built.make_test_ca(tmp_path / "other")["ca"]
    register = artifacts.functions["register"]
    container = built.Container(artifacts, register, aws_path.variables(register, ca=other_ca))
    try:
        ws = str(uuid.uuid4())
        outcome = container.invoke(
            harness.api_event("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "x"}}), timeout=30
        )
        assert outcome.ok and outcome.payload["statusCode"] == 200, outcome
        assert rds.get(f"ws:{ws}") is None
        assert aws_path.redis_front.failed_handshakes >= 1 and aws_path.redis_front.handshakes == 0
        assert "redis unavailable" in container.log_tail(200)
    finally:
        container.close()


# ------------------------------------------------- make run ARGS=--built


def test_make_run_built_serves_the_local_api_from_the_artifacts(artifacts, servers, tmp_path):
    """`make run ARGS=--built`: the same local API, each request answered
    by a built function's runtime process (python3.13 -S -E -B in the
    packaged task root), not by the runner's own interpreter."""
    import psutil

    from test_local_run import Run, clean_env, free_port

    env = clean_env(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
    run = Run(tmp_path / "state", free_port(), "--built", "--sweep-interval", "3600", use_make=False, env=env)
    try:
        run.wait_for(r"^ready on http://127\.0\.0\.1:\d+", timeout=120)
        run.wait_for(r"^--built: .*functions from \.aws-sam/built/")
        ws = str(uuid.uuid4())
        status, body = run.post("/registry/register", {"id": ws, "url": "http://localhost:8000", "agent_card": {"name": "built"}})
        assert status == 200 and body["status"] == "registered", body
        assert run.post("/registry/heartbeat", {"workspace_id": ws}, body["auth_token"]) == (200, {"status": "ok"})
        assert run.post("/registry/heartbeat", {"workspace_id": ws})[0] == 401
        # Who answered: one runtime process per served function, Python 3.13
        # in the packaged artifact, children of the runner.
        runtimes = {}
        for child in psutil.Process(run.proc.pid).children(recursive=True):
            cmd = child.cmdline()
            if cmd[1:4] == ["-S", "-E", "-B"]:
                runtimes[Path(child.cwd()).name] = cmd[0]
        served = {artifacts.functions[name].logical_id for name in ("register", "heartbeat", "update_card", "deregister", "liveness_sweep")}
        assert served <= set(runtimes), runtimes
        assert all(Path(exe).resolve() == Path(artifacts.python).resolve() for exe in runtimes.values()), runtimes
        assert run.interrupt() == 0, run.output
        assert "Traceback" not in run.output, run.output
    finally:
        run.force_stop()


# ------------------------------------------------------------ failure paths


def test_an_unhandled_exception_is_posted_as_the_invocation_error(artifacts, servers):
    """The sweep raises when Postgres is unreachable (so the scheduler's DLQ
    sees it); the runtime client posts it to .../error and keeps serving."""
    sweep = artifacts.functions["liveness_sweep"]
    variables = built.sam_local_env(
        sweep, {"Parameters": {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/postgres", "REDIS_URL": servers.redis_url}}, shell_env={}
    )
    container = built.Container(artifacts, sweep, variables)
    try:
        first = container.invoke(harness.scheduled_event(), timeout=30)
        assert not first.ok and first.error_type == "Unhandled", first
        assert first.payload["errorType"] == "DatabaseUnavailable", first.payload
        second = container.invoke(harness.scheduled_event(), timeout=30)
        assert not second.ok and container.cold_starts == 1  # same sandbox, still serving
    finally:
        container.close()


def test_a_handler_that_does_not_exist_is_an_init_error(artifacts):
    function = artifacts.functions["heartbeat"]
    broken = built.BuiltFunction(**{**function.__dict__, "handler": "app.no_such_handler"})
    container = built.Container(artifacts, broken, {})
    try:
        with pytest.raises(InitError) as err:
            container.start()
        assert err.value.error["errorType"] == "Runtime.HandlerNotFound", err.value.error
    finally:
        container.close()


# ------------------------------------------------------------ the lock file


def _lock_entries(text: str) -> dict[str, dict]:
    """requirements.lock: name -> version, hashes, what it is required by."""
    entries: dict[str, dict] = {}
    current = None
    via_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not raw.startswith("    #")):
            continue
        if "==" in line and not raw.startswith(" "):
            name, version = line.rstrip(" \\").split("==")
            current = entries.setdefault(name.lower(), {"version": version, "hashes": [], "via": set()})
            via_block = False
        elif line.startswith("--hash=sha256:"):
            current["hashes"].append(line.split(":", 1)[1].rstrip(" \\"))
        elif line.startswith("# via"):
            rest = line[len("# via") :].strip()
            via_block = not rest
            if rest:
                current["via"].add(rest)
        elif via_block and line.startswith("#"):
            current["via"].add(line.lstrip("# ").strip())
    return entries


def test_the_lock_file_matches_the_layer_requirements():
    """layers/shared/requirements.lock (make lock) pins exactly what
    requirements.txt asks for: every requirement, at a version its
    specifier allows, each pin with hashes; nothing left over from a
    requirement that was removed."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock_text = (LAYER_SOURCE / "requirements.lock").read_text()
    assert "make lock" in lock_text.splitlines()[1], "the header names the command that wrote it"
    entries = _lock_entries(lock_text)
    wanted = [
        Requirement(line.split("#")[0].strip())
        for line in (LAYER_SOURCE / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    top_level = {name for name, entry in entries.items() if "-r layers/shared/requirements.txt" in entry["via"]}
    assert top_level == {canonicalize_name(r.name) for r in wanted}, "run make lock: requirements.txt and the lock differ"
    for requirement in wanted:
        entry = entries[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(entry["version"], prereleases=True), (requirement, entry["version"])
    for name, entry in entries.items():
        assert entry["hashes"] and all(len(h) == 64 for h in entry["hashes"]), name
        assert entry["via"], f"{name} is required by nothing"
    # Binary packages carry wheels for several platforms (arm64 and x86_64
    # among them, which `make lock` checks with pip against the index).
    for name in ("psycopg2-binary", "pydantic-core"):
        assert len(entries[name]["hashes"]) >= 4, name


def test_the_layer_build_installs_only_hashed_pins_for_the_template_architecture():
    makefile = (LAYER_SOURCE / "Makefile").read_text()
    assert "--require-hashes" in makefile and "--no-deps" in makefile and "-r requirements.lock" in makefile
    assert "--invalidation-mode unchecked-hash" in makefile
    assert "ARCHITECTURE ?= arm64" in makefile  # the template's default
    template = built.load_template()
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"


# --------------------------------------------------------- the emulator alone


def _request(address: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection(address, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_runtime_api_emulator_speaks_the_protocol():
    api = RuntimeApi("probe", timeout_seconds=5)
    try:
        results = {}
        invoker = threading.Thread(target=lambda: results.setdefault("first", api.invoke({"n": 1}, timeout=5)))
        invoker.start()
        status, headers, body = _request(api.address, "GET", "/2018-06-01/runtime/invocation/next")
        assert status == 200 and json.loads(body) == {"n": 1}
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:probe")
        assert int(headers["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000
        assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
        assert _request(api.address, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response", b'{"ok": true}')[0] == 202
        invoker.join(5)
        assert results["first"].ok and results["first"].payload == {"ok": True}
        # Answering twice, or an unknown id, is refused.
        assert _request(api.address, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response", b"{}")[0] == 400
        # An error.
        invoker = threading.Thread(target=lambda: results.setdefault("second", api.invoke({"n": 2}, timeout=5)))
        invoker.start()
        status, headers, body = _request(api.address, "GET", "/2018-06-01/runtime/invocation/next")
        error = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        status = _request(
            api.address,
            "POST",
            f"/2018-06-01/runtime/invocation/{request_id}/error",
            json.dumps(error).encode(),
            {"Lambda-Runtime-Function-Error-Type": "Unhandled"},
        )[0]
        assert status == 202
        invoker.join(5)
        assert not results["second"].ok and results["second"].payload == error and results["second"].error_type == "Unhandled"
        assert _request(api.address, "GET", "/2018-06-01/runtime/nope")[0] == 404
        # Shutting down: a waiting poll is answered 500, so the runtime ends its loop.
        poll = {}
        poller = threading.Thread(
            target=lambda: poll.setdefault("status", _request(api.address, "GET", "/2018-06-01/runtime/invocation/next")[0])
        )
        polls = api.next_calls
        poller.start()
        deadline = time.monotonic() + 5
        while api.next_calls == polls and time.monotonic() < deadline:  # the poll is waiting
            time.sleep(0.005)
        api.close()
        poller.join(5)
        assert poll["status"] == 500
    finally:
        if not api._closed.is_set():
            api.close()


def test_runtime_api_emulator_reports_an_init_error():
    api = RuntimeApi("probe")
    try:
        error = {"errorMessage": "Unable to import module 'app'", "errorType": "Runtime.ImportModuleError"}
        assert (
            _request(
                api.address,
                "POST",
                "/2018-06-01/runtime/init/error",
                json.dumps(error).encode(),
                {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
            )[0]
            == 202
        )
        assert api.wait_ready(1) and api.init_error["errorType"] == "Runtime.ImportModuleError"
        with pytest.raises(InitError):
            api.invoke({}, timeout=1)
    finally:
        api.close()
