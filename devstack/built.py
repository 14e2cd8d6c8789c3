"""The built artifacts (``sam build``) run under the Lambda runtime client,
without Docker: what ``sam local invoke`` / ``start-api`` do in a container,
here in a plain process.

    python -m devstack.built build [--arch x86_64]   # build (cached), print where
    python -m devstack.built prefetch                # the same, detached (make test)
    python -m devstack.built tools                   # only the SAM virtualenv

What runs, for each function, is what Lambda runs:

- the function's folder from the build, zipped the way ``sam package``
  zips it (SAM's own zip function: every entry dated 1980-01-01) and
  extracted with those dates, as the task root (the working directory);
- the layer's ``python/`` from the same kind of zip, in place of /opt/python;
- ``awslambdaric`` (Lambda's runtime client, installed for Python 3.13
  outside the artifact, as Lambda keeps it in /var/runtime);
- CPython 3.13 (pyenv's here) started with ``-S -E -B``: no site-packages,
  no PYTHON* variables, no .pyc written (Lambda's /var/task and /opt are
  read-only), and ``sys.path`` set to exactly task root, layer, runtime
  client, standard library;
- fed by the Runtime API emulator (devstack/runtime_api.py).

The build needs Python 3.13 (the runtime: SAM's python builder and the
layer's compileall use it) and the SAM CLI, which lives in its own
virtualenv (.venv-sam, requirements-sam.txt): its pins conflict with the
dev virtualenv's. Builds are cached under .aws-sam/built/ by a hash of
everything that goes into them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.harness import ACCOUNT, FAKE_CREDENTIALS, REGION, REPO
from devstack.runtime_api import InitError, InvocationTimeout, Outcome, RuntimeApi, RuntimeGone

TEMPLATE = REPO / "template.yaml"
WORK = REPO / ".aws-sam" / "built"
SAM_VENV = REPO / ".venv-sam"
SAM_REQUIREMENTS = REPO / "requirements-sam.txt"
# Lambda's runtime client, as in /var/runtime of the python3.13 runtime.
RUNTIME_CLIENT = "awslambdaric==4.2.2"
RUNTIME_PYTHON = (3, 13)
# Bump when the build or packaging steps here change, so caches are redone.
RECIPE = "4"
KEEP_BUILDS = 2  # per architecture
# What goes into a build (besides the template): the hash covers these.
INPUTS = ("template.yaml", "samconfig.toml", "requirements-sam.txt", "functions", "layers/shared")


class Unavailable(Exception):
    """This machine cannot build or run the artifacts (the reason says why)."""


# ------------------------------------------------------------ machine checks


def machine_architecture() -> str:
    """The Lambda name of this machine's CPU: a build for it can run here."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise Unavailable(f"Lambda has no {machine} architecture, so nothing built for Lambda runs on this machine")


def _python_version(candidate: str, env: Mapping[str, str] | None = None) -> tuple[tuple[int, int], str] | None:
    try:
        done = subprocess.run(
            [candidate, "-c", "import sys, json; print(json.dumps([sys.version_info[:2], sys.executable]))"],
            capture_output=True,
            text=True,
            timeout=20,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        version, executable = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return (version[0], version[1]), executable


def find_python313() -> Path:
    """A CPython 3.13 interpreter (the python3.13 runtime), else Unavailable.

    Looked for as $PYTHON313, python3.13 on PATH, then pyenv's versions
    (~/.pyenv/versions/3.13.*, what `PYENV_VERSION=3.13.0` selects).
    """
    candidates: list[tuple[str, dict[str, str] | None]] = []
    if os.environ.get("PYTHON313"):
        candidates.append((os.environ["PYTHON313"], None))
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append((on_path, None))
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for version_dir in sorted((pyenv_root / "versions").glob("3.13*"), reverse=True):
        candidates.append((str(version_dir / "bin" / "python3.13"), None))
    tried = []
    for candidate, env in candidates:
        found = _python_version(candidate, env)
        tried.append(candidate)
        if found and found[0] == RUNTIME_PYTHON:
            # sys.executable: the real binary behind a pyenv shim.
            return Path(found[1])
    raise Unavailable(
        "Python 3.13 (the Lambda runtime the template names) is not installed: "
        + ("tried " + ", ".join(tried) if tried else "no python3.13 on PATH and no ~/.pyenv/versions/3.13*")
        + ". Install it (pyenv install 3.13) or set PYTHON313."
    )


# --------------------------------------------------------------------- tools


def _stamp_ok(stamp: Path, digest: str) -> bool:
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


def _run(cmd: list[str], log: Callable[[str], None], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "is ignored: it is neither" not in line)
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{output[-6000:]}")
    return done


def ensure_tools(log: Callable[[str], None] = print) -> Path:
    """The SAM CLI in .venv-sam, installed from requirements-sam.txt when
    it is missing or the file changed. Returns the sam executable."""
    digest = hashlib.sha256(SAM_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = SAM_VENV / ".installed"
    sam = SAM_VENV / "bin" / "sam"
    if _stamp_ok(stamp, digest) and sam.exists():
        return sam
    started = time.monotonic()
    log(f"installing the SAM CLI into {SAM_VENV.relative_to(REPO)} (requirements-sam.txt) ...")
    if not (SAM_VENV / "bin" / "python").exists():
        # The dev venv's base interpreter: any Python 3.9+ runs the SAM CLI.
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(SAM_VENV)], log)
    _run(
        [str(SAM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(SAM_REQUIREMENTS)],
        log,
    )
    stamp.write_text(digest + "\n")
    log(f"SAM CLI installed in {time.monotonic() - started:.0f} s")
    return sam


def ensure_runtime_client(python: Path, log: Callable[[str], None] = print) -> Path:
    """awslambdaric for this Python 3.13, in a folder of its own (Lambda's
    /var/runtime): on the runtime's path, never in the artifact."""
    version = _python_version(str(python))
    tag = f"{RUNTIME_CLIENT}-py{version[0][0]}{version[0][1]}-{platform.machine()}" if version else RUNTIME_CLIENT
    target = REPO / ".aws-sam" / "runtime" / hashlib.sha256(tag.encode()).hexdigest()[:12]
    stamp = target / ".installed"
    if _stamp_ok(stamp, tag):
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    log(f"installing {RUNTIME_CLIENT} for {python} ...")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(target),
            RUNTIME_CLIENT,
        ],
        log,
    )
    # Compiled once here, as Lambda ships its runtime client.
    _run([str(python), "-m", "compileall", "-q", str(target)], log)
    stamp.write_text(tag + "\n")
    return target


# -------------------------------------------------------------------- builds


@dataclass
class BuiltFunction:
    name: str  # the folder under functions/
    logical_id: str
    handler: str
    task_root: Path  # the packaged (zipped, extracted) function folder
    memory_mb: int
    timeout_s: int


@dataclass
class Build:
    root: Path
    architecture: str
    python: Path
    runtime_dir: Path
    layer_dir: Path  # the packaged layer's python/ (what Lambda mounts as /opt/python)
    functions: dict[str, BuiltFunction]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def sam_build_dir(self) -> Path:
        return self.root / "build"

    @property
    def zips(self) -> Path:
        return self.root / "zips"


def _files(base: Path) -> list[Path]:
    out = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(REPO)
        if "__pycache__" in rel.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        out.append(path)
    return out


def input_hash(architecture: str, python: Path) -> str:
    """What decides a build's content: every input file, the architecture,
    the Python 3.13 that compiles the layer, and this module's recipe."""
    h = hashlib.sha256()
    version = _python_version(str(python))
    for part in (RECIPE, architecture, json.dumps(version[0] if version else None), RUNTIME_CLIENT):
        h.update(part.encode() + b"\0")
    for name in INPUTS:
        path = REPO / name
        paths = [path] if path.is_file() else _files(path) if path.is_dir() else []
        for file in paths:
            h.update(str(file.relative_to(REPO)).encode() + b"\0")
            h.update(hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml with its short-form tags (!Ref, !Sub ...) as the
    long-form dicts CloudFormation uses."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "Condition":
            return {"Condition": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", construct)
    return yaml.load(path.read_text(), Loader=Loader)  # a SafeLoader subclass


def template_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """folder name under functions/ -> logical id, handler, memory, timeout."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    out = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        code = str(props.get("CodeUri", "")).rstrip("/")
        out[Path(code).name] = {
            "logical_id": logical_id,
            "handler": props.get("Handler") or globals_.get("Handler"),
            "memory_mb": int(props.get("MemorySize") or globals_.get("MemorySize") or 128),
            "timeout_s": int(props.get("Timeout") or globals_.get("Timeout") or 3),
        }
    return out


class _Flock:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a+")  # noqa: SIM115 - held for the with block

    def __enter__(self):
        fcntl.flock(self._file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def build(architecture: str | None = None, log: Callable[[str], None] = print) -> Build:
    """The artifacts for this input hash: built, packaged and extracted
    once, then reused. Safe to call from several processes at once (the
    second waits for the first and takes its result)."""
    architecture = architecture or machine_architecture()
    python = find_python313()
    with _Flock(WORK / ".lock"):
        sam = ensure_tools(log)
        runtime_dir = ensure_runtime_client(python, log)
        key = input_hash(architecture, python)
        root = WORK / f"{architecture}-{key[:16]}"
        done = root / "complete.json"
        if done.exists():
            info = json.loads(done.read_text())
            info["cached"] = True
            return _as_build(root, architecture, python, runtime_dir, info)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        info = {"architecture": architecture, "python": str(python), "input_hash": key}
        started = time.monotonic()
        log(f"sam build for {architecture} with {python} ...")
        env = dict(os.environ)
        env.update(
            {
                "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
                "SAM_CLI_TELEMETRY": "0",
                # layers/shared/Makefile: SAM gives a makefile build no architecture.
                "ARCHITECTURE": architecture,
                "PYTHON313": str(python),
            }
        )
        done_build = _run(
            [
                str(sam),
                "build",
                "--no-cached",
                "--parallel",
                "--template-file",
                str(TEMPLATE),
                "--build-dir",
                str(root / "build"),
                "--parameter-overrides",
                f"Architecture={architecture}",
            ],
            log,
            cwd=REPO,
            env=env,
        )
        info["sam_build_seconds"] = round(time.monotonic() - started, 1)
        # SAM's own account of what it built (each function's architecture).
        (root / "sam-build.log").write_text(
            "\n".join(line for line in (done_build.stdout + done_build.stderr).splitlines() if "is ignored: it is neither" not in line)
            + "\n"
        )
        mark = time.monotonic()
        _package(root, sam.parent / "python")
        info["package_seconds"] = round(time.monotonic() - mark, 1)
        info["sizes"] = {p.stem: p.stat().st_size for p in sorted((root / "zips").glob("*.zip"))}
        done.write_text(json.dumps(info, indent=2) + "\n")
        _prune(architecture, keep=root)
        log(f"built in {info['sam_build_seconds']:.0f} s, packaged in {info['package_seconds']:.0f} s: {root.relative_to(REPO)}")
        info["cached"] = False
        return _as_build(root, architecture, python, runtime_dir, info)


def _as_build(root: Path, architecture: str, python: Path, runtime_dir: Path, info: dict) -> Build:
    functions = {}
    for name, spec in template_functions(load_template()).items():
        functions[name] = BuiltFunction(
            name=name,
            logical_id=spec["logical_id"],
            handler=spec["handler"],
            task_root=root / "packaged" / spec["logical_id"],
            memory_mb=spec["memory_mb"],
            timeout_s=spec["timeout_s"],
        )
    return Build(root, architecture, python, runtime_dir, root / "packaged" / "SharedLayer" / "python", functions, info)


# SAM's own zip step, run in its virtualenv: the zip `sam package` uploads.
_ZIP_WITH_SAM = """
import sys
from samcli.lib.package.utils import make_zip_with_lambda_permissions
for source, target in zip(sys.argv[1::2], sys.argv[2::2]):
    make_zip_with_lambda_permissions(target, source)
"""


def sam_zip(pairs: list[tuple[Path, Path]], sam_python: Path = SAM_VENV / "bin" / "python") -> None:
    """Zip each folder to its target (``.zip`` added) as `sam package` does."""
    _run([str(sam_python), "-c", _ZIP_WITH_SAM, *(str(p) for pair in pairs for p in pair)], print)


def _package(root: Path, sam_python: Path) -> None:
    """Zip each built folder as `sam package` does, and extract the zips
    as Lambda does (dates and modes kept), read-only."""
    zips = root / "zips"
    zips.mkdir()
    sam_zip([(folder, zips / folder.name) for folder in sorted(p for p in (root / "build").iterdir() if p.is_dir())], sam_python)
    for archive in sorted(zips.glob("*.zip")):
        extract_like_lambda(archive, root / "packaged" / archive.stem)


def extract_like_lambda(archive: Path, target: Path, *, skip: Callable[[str], bool] | None = None) -> None:
    """Unzip with each entry's date as the file's mtime (as unzip and Lambda
    do: `sam package` dates make every file 1980-01-01) and its mode, then
    make the tree read-only like /var/task and /opt."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if skip is not None and skip(info.filename):
                continue
            path = Path(zf.extract(info, target))
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                os.chmod(path, mode)
            stamp = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(path, (stamp, stamp))
    set_read_only(target)


def set_read_only(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def remove_tree(tree: Path) -> None:
    """rmtree for the read-only trees above (root ignores the modes; others do not)."""
    if not tree.exists():
        return
    for path in [tree, *tree.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(tree, ignore_errors=True)


def _prune(architecture: str, keep: Path) -> None:
    builds = sorted(WORK.glob(f"{architecture}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [b for b in builds if b != keep][KEEP_BUILDS - 1 :]:
        remove_tree(old)


def prefetch() -> str:
    """Start build() in a detached process and return at once; build()
    callers later wait for it on the lock and reuse its result. Returns
    what happened, for the make output."""
    try:
        find_python313()
        machine_architecture()
    except Unavailable as why:
        return f"built artifacts: not built ({why})"
    WORK.mkdir(parents=True, exist_ok=True)
    log = open(WORK / "prefetch.log", "w")  # noqa: SIM115 - handed to the child
    subprocess.Popen(
        [sys.executable, "-m", "devstack.built", "build"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return f"built artifacts: building in the background (log: {(WORK / 'prefetch.log').relative_to(REPO)})"


# ----------------------------------------------------------- the environment


def _resolve(value: Any, names: Mapping[str, Any], conditions: Mapping[str, Any]) -> Any:
    """CloudFormation intrinsics over known values; None when a name is unknown."""
    if isinstance(value, list):
        return [_resolve(v, names, conditions) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        return {k: _resolve(v, names, conditions) for k, v in value.items()}
    ((key, arg),) = value.items()
    if key == "Ref":
        return names.get(arg)
    if key == "Fn::GetAtt":
        return names.get(".".join(arg) if isinstance(arg, list) else arg)
    if key == "Fn::Sub":
        text, local = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
        import re

        def sub(match):
            name = match.group(1)
            found = _resolve(local[name], names, conditions) if name in local else names.get(name)
            if found is None:
                raise LookupError(name)
            return str(found)

        try:
            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        except LookupError:
            return None
    if key == "Fn::If":
        name, yes, no = arg
        return _resolve(yes if _condition(name, names, conditions) else no, names, conditions)
    if key == "Fn::Join":
        sep, items = arg
        parts = _resolve(items, names, conditions)
        return None if parts is None or None in parts else sep.join(str(p) for p in parts)
    return None


def _condition(name_or_expr: Any, names: Mapping[str, Any], conditions: Mapping[str, Any]) -> bool:
    expr = conditions[name_or_expr] if isinstance(name_or_expr, str) else name_or_expr
    ((key, arg),) = expr.items()
    if key == "Condition":
        return _condition(arg, names, conditions)
    if key == "Fn::Equals":
        a, b = (_resolve(x, names, conditions) for x in arg)
        return a == b
    if key == "Fn::Not":
        return not _condition(arg[0], names, conditions)
    if key == "Fn::And":
        return all(_condition(x, names, conditions) for x in arg)
    if key == "Fn::Or":
        return any(_condition(x, names, conditions) for x in arg)
    raise ValueError(f"unsupported condition {key}")


def _declared_variables(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    glob = ((template.get("Globals") or {}).get("Function") or {}).get("Environment", {}).get("Variables", {})
    own = (template["Resources"][logical_id].get("Properties") or {}).get("Environment", {}).get("Variables", {})
    return {**glob, **own}


def _parameter_values(template: dict[str, Any], overrides: Mapping[str, str] | None) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in (template.get("Parameters") or {}).items()}
    values.update(overrides or {})
    values.update({"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::StackName": "workspace-registry"})
    return values


def _stringify(value: Any) -> str:
    # SAM CLI's rule (local/lambdafn/env_vars.py): anything unresolved is "".
    if isinstance(value, (dict, list, tuple)) or value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def sam_local_env(
    function: BuiltFunction,
    env_vars: Mapping[str, Any] | None = None,
    *,
    shell_env: Mapping[str, str] | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The function's variables as `sam local invoke --env-vars FILE` sets them.

    The template's variables (Globals and the function's own), parameters
    at their defaults, anything else it cannot resolve as ""; then the shell's
    value of a declared variable, then the file's "Parameters" section, then
    the file's section for the function's logical id. Variables the template
    does not declare are never set (SAM's rule, hence the empty
    DATABASE_URL and AWS_ENDPOINT_URL in the template).
    """
    template = template or load_template()
    declared = _declared_variables(template, function.logical_id)
    names = _parameter_values(template, parameter_overrides)
    conditions = template.get("Conditions") or {}
    file_values = {**((env_vars or {}).get("Parameters") or {}), **((env_vars or {}).get(function.logical_id) or {})}
    out = {}
    for name, value in declared.items():
        try:
            resolved = _resolve(value, names, conditions)
        except (KeyError, ValueError):
            resolved = None
        if shell_env and name in shell_env:
            resolved = shell_env[name]
        if name in file_values:
            resolved = file_values[name]
        out[name] = _stringify(resolved)
    return out


def deployed_env(
    function: BuiltFunction,
    resources: Mapping[str, Any],
    *,
    parameter_overrides: Mapping[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The function's variables as CloudFormation would set them, with the
    stack's resources standing in as ``resources`` (logical id or
    "Id.Attribute" -> value, e.g. {"DatabaseSecret": arn,
    "DatabaseProxy.Endpoint": host}). An unresolvable value is an error."""
    template = template or load_template()
    names = {**_parameter_values(template, parameter_overrides), **resources}
    conditions = template.get("Conditions") or {}
    out = {}
    for name, value in _declared_variables(template, function.logical_id).items():
        resolved = _resolve(value, names, conditions)
        if resolved is None:
            raise KeyError(f"{name}: {value} needs a value for one of the stack's resources")
        out[name] = _stringify(resolved)
    return out


def runtime_env(build: Build, function: BuiltFunction, variables: Mapping[str, str], api_address: str) -> dict[str, str]:
    """What the Lambda service sets around the function's own variables."""
    name = f"workspace-registry-{function.name}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "_HANDLER": function.handler,
        "LAMBDA_TASK_ROOT": str(function.task_root),
        "LAMBDA_RUNTIME_DIR": str(build.runtime_dir),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        # Fake credentials, never this machine's ~/.aws files: nothing may reach a real account.
        **FAKE_CREDENTIALS,
    }
    env.update({k: v for k, v in variables.items() if v is not None})
    return env


# --------------------------------------------------------- the runtime client

# Run as `python3.13 -S -E -B -c BOOTSTRAP REPORT_PATH AUDIT`, working
# directory = the task root, like Lambda's `python -m awslambdaric`.
BOOTSTRAP = r"""
import os, sys
task_root = os.environ["LAMBDA_TASK_ROOT"]
layer = sys.argv[1]
runtime_dir = os.environ["LAMBDA_RUNTIME_DIR"]
report_path = sys.argv[2]
# Lambda's order: the function, the layer (/opt/python), the runtime client, the standard library.
sys.path[:] = [task_root, layer, runtime_dir] + [p for p in sys.path if p and p != os.getcwd()]
sources = []
if sys.argv[3] == "audit":
    def _audit(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].endswith(".py"):
            sources.append(args[0])
    sys.addaudithook(_audit)

def _report():
    import json, sysconfig
    roots = {"task": task_root, "layer": layer, "runtime": runtime_dir}
    stdlib = {os.path.realpath(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib")}
    site = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
    counts, outside = {}, {}
    for name, module in list(sys.modules.items()):
        files = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", []) or [])
        files = [f for f in files if isinstance(f, str)]
        if not files:
            counts["builtin"] = counts.get("builtin", 0) + 1
            continue
        real = os.path.realpath(files[0])
        where = next((k for k, r in roots.items() if real.startswith(os.path.realpath(r) + os.sep)), None)
        if where is None and any(real.startswith(s + os.sep) for s in stdlib) and not any(real.startswith(s + os.sep) for s in site):
            where = "stdlib"
        if where is None:
            outside[name] = real
        else:
            counts[where] = counts.get(where, 0) + 1
    with open(report_path, "w") as out:
        json.dump({
            "python": sys.version, "executable": sys.executable, "path": sys.path,
            "dont_write_bytecode": sys.flags.dont_write_bytecode, "no_site": sys.flags.no_site,
            "counts": counts, "outside": outside, "sources_read": sources,
            "modules": sorted(sys.modules),
        }, out)

import signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
try:
    from awslambdaric.__main__ import main
    main(["awslambdaric", os.environ["_HANDLER"]])
except BaseException as err:
    # The emulator ends the loop by answering a poll with 500.
    print(f"runtime loop ended: {type(err).__name__}", file=sys.stderr)
finally:
    if report_path != "-":
        _report()
"""


class Container:
    """One function's execution environment: a runtime client process and
    its Runtime API. Started on first use; a process that died is replaced
    by a fresh one (a new cold start) on the next invocation."""

    def __init__(
        self,
        build: Build,
        function: BuiltFunction,
        variables: Mapping[str, str],
        *,
        layer_dir: Path | None = None,
        audit: bool = False,
        on_output: Callable[[str, str], None] | None = None,
    ):
        self.build = build
        self.function = function
        self.variables = dict(variables)
        self.layer_dir = layer_dir or build.layer_dir
        self.audit = audit
        self.on_output = on_output
        self.api: RuntimeApi | None = None
        self.process: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.init_seconds: float | None = None
        self.output: list[str] = []
        self.report: dict[str, Any] | None = None
        self.cold_starts = 0
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix=f"lambda-{function.name}-"))
        self._readers: list[threading.Thread] = []
        self._stopping = False

    @property
    def report_path(self) -> Path:
        return self._scratch / "report.json"

    def start(self, timeout: float = 60.0) -> float:
        """Start the process and wait for its init; returns the init seconds
        (process start to its first poll for an event, as Lambda counts it)."""
        self.api = RuntimeApi(f"workspace-registry-{self.function.name}", timeout_seconds=self.function.timeout_s)
        env = runtime_env(self.build, self.function, self.variables, self.api.address)
        env["TMPDIR"] = str(self._scratch)
        self.report_path.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [
                str(self.build.python),
                "-S",
                "-E",
                "-B",
                "-c",
                BOOTSTRAP,
                str(self.layer_dir),
                str(self.report_path),
                "audit" if self.audit else "-",
            ],
            cwd=self.function.task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.cold_starts += 1
        for stream, label in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            reader = threading.Thread(target=self._pump, args=(stream, label), daemon=True)
            reader.start()
            self._readers.append(reader)
        deadline = time.monotonic() + timeout
        while not self.api.wait_ready(0.05):
            if self.process.poll() is not None:
                self._reap()
                raise RuntimeGone(f"{self.function.name}: the runtime exited during init ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise InvocationTimeout(f"{self.function.name}: init took over {timeout:g} s:\n{self.log_tail()}")
        if self.api.init_error is not None:
            raise InitError(self.api.init_error)
        self.init_seconds = self.api.first_next_at - self.started_at
        return self.init_seconds

    def _pump(self, stream, label: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.output.append(line)
            if len(self.output) > 5000:
                del self.output[:1000]
            # Not while stopping: the runtime client's last word is an error about its ended poll.
            if self.on_output is not None and not self._stopping:
                self.on_output(self.function.name, line)
        stream.close()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.output[-lines:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def invoke(self, event: Any, timeout: float | None = None) -> Outcome:
        with self._lock:
            if not self.running:
                if self.process is not None:
                    self._reap()
                self.start()
            try:
                return self.api.invoke(event, timeout if timeout is not None else self.function.timeout_s)
            except InvocationTimeout:
                # Lambda ends a timed-out sandbox; the next call starts cold.
                self.stop()
                raise

    def _reap(self) -> None:
        if self.api is not None:
            self.api.abandon()
            self.api.close()
            self.api = None

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """End the runtime loop (its next poll gets 500), collect its report."""
        if self.process is None:
            return self.report
        self._stopping = True
        if self.api is not None:
            self.api.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(2)
        self._readers.clear()
        self.api = None
        self.process = None
        self._stopping = False
        with contextlib.suppress(OSError, ValueError):
            self.report = json.loads(self.report_path.read_text())
        return self.report

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)


# ----------------------------------------------------- make run ARGS=--built


class Invoker:
    """devstack.local's invoker, served by the built artifacts: one
    container per function (one warm Lambda sandbox), one invocation at a
    time each, the function's logs on the console."""

    def __init__(
        self, build: Build, variables: Callable[[BuiltFunction], Mapping[str, str]], on_output: Callable[[str, str], None] | None = None
    ):
        self.build = build
        self.closed = False
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="built")
        self.containers = {name: Container(build, f, variables(f), on_output=on_output) for name, f in build.functions.items()}

    def start(self, names: list[str]) -> dict[str, float]:
        """Warm these functions up in parallel; their init seconds."""
        futures = {name: self._pool.submit(self.containers[name].start) for name in names if name in self.containers}
        return {name: future.result() for name, future in futures.items()}

    def invoke(self, function, event: dict[str, Any], timeout_seconds: float | None = None) -> concurrent.futures.Future:
        """The built function's answer to ``event``, as a future (devstack.local's interface)."""
        container = self.containers.get(function.name)
        if container is None:
            raise RuntimeError(f"functions/{function.name} is not in the build")
        if self.closed:
            raise RuntimeError("cannot schedule new futures after shutdown")

        def call():
            outcome = container.invoke(event, timeout=timeout_seconds or container.function.timeout_s)
            if not outcome.ok:
                # Lambda's answer to an unhandled error: API Gateway makes it a 502.
                raise FunctionError(f"{outcome.error_type}: {json.dumps(outcome.payload)[:2000]}")
            return outcome.payload

        return self._pool.submit(call)

    def close(self) -> None:
        self.closed = True
        for container in self.containers.values():
            container.close()
        self._pool.shutdown(wait=True, cancel_futures=True)


class FunctionError(Exception):
    pass


def local_invoker(names: list[str], endpoints: Mapping[str, str], line: Callable[[str], None], *, show_all_logs: bool = False) -> Invoker:
    """`make run ARGS=--built`: build (or reuse) the artifacts for this
    machine and serve ``names`` from them. Each function gets its variables
    as `sam local invoke --env-vars events/env.json` would give them, with
    env.json's addresses replaced by the runner's ``endpoints``
    (DATABASE_URL, REDIS_URL, AWS_ENDPOINT_URL) and the shell's values of
    declared variables applied (SAM does that too: LIVENESS_TTL_SECONDS,
    POWERTOOLS_LOG_LEVEL ... as the runner sets them)."""
    started = time.monotonic()
    line("--built: building the artifacts (sam build, Python 3.13; cached after the first run) ...")
    result = build(log=lambda text: line(f"--built: {text}"))
    env_vars = json.loads((REPO / "events" / "env.json").read_text())
    env_vars.setdefault("Parameters", {}).update(endpoints)
    template = load_template()

    def variables(function: BuiltFunction) -> dict[str, str]:
        return sam_local_env(function, env_vars, shell_env=os.environ, template=template)

    def show(name: str, text: str) -> None:
        # Powertools prints a metrics blob per request (EMF); nothing reads it here.
        if show_all_logs or not text.startswith(('{"_aws"', "runtime loop ended")):
            line(f"{time.strftime('%H:%M:%S')}  {name:<14} {text}")

    invoker = Invoker(result, variables, on_output=show)
    missing = [n for n in names if n not in result.functions]
    if missing:
        line(f"--built: not in the build (template.yaml has no function for them): {', '.join(missing)}")
    try:
        inits = invoker.start([n for n in names if n in result.functions])
    except Exception:
        invoker.close()
        raise
    where = result.root.relative_to(REPO) if result.root.is_relative_to(REPO) else result.root
    line(
        f"--built: {len(inits)} functions from {where} ({result.architecture}, {'cached' if result.info.get('cached') else 'new build'}) "
        f"under awslambdaric on {result.python} in {time.monotonic() - started:.1f} s; "
        + ", ".join(f"{n} init {s * 1000:.0f} ms" for n, s in sorted(inits.items()))
    )
    return invoker


# ------------------------------------------------------- TLS for the AWS path


def make_test_ca(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """A throw-away CA and a server certificate it signed for ``hosts``
    (IP addresses as IP SANs). Returns the paths: ca, cert, key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class TlsFront:
    """A TLS-only listener on 127.0.0.1 relaying to a plain server (a Unix
    socket path or a (host, port)): ElastiCache's rediss:// in front of the
    embedded Redis. Counts completed and failed handshakes."""

    def __init__(self, upstream: str | tuple[str, int], cert: Path, key: Path):
        import socket
        import ssl

        self.upstream = upstream
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(str(cert), str(key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()[:2]
        self.handshakes = 0
        self.failed_handshakes = 0
        self._closed = False
        self._sockets: set = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="tls-front").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect(self):
        import socket

        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.upstream)
        else:
            sock = socket.create_connection(self.upstream, timeout=5)
            sock.settimeout(None)
        return sock

    def _serve(self, client) -> None:
        import ssl

        try:
            client.settimeout(10)
            tls = self._context.wrap_socket(client, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError):
            with self._lock:
                self.failed_handshakes += 1
            client.close()
            return
        with self._lock:
            self.handshakes += 1
        try:
            upstream = self._connect()
        except OSError:
            tls.close()
            return
        with self._lock:
            self._sockets.update((tls, upstream))
        try:
            self._relay(tls, upstream)
        finally:
            for sock in (tls, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.difference_update((tls, upstream))

    @staticmethod
    def _relay(tls, upstream) -> None:
        """Both directions in one thread: an SSL object must not be read
        and written from two threads at once."""
        import selectors
        import ssl

        selector = selectors.DefaultSelector()
        tls.setblocking(False)
        upstream.setblocking(False)
        selector.register(tls, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, tls)
        try:
            while True:
                for key, _ in selector.select(timeout=1.0):
                    source, target = key.fileobj, key.data
                    try:
                        data = source.recv(65536)
                        # Decrypted bytes can wait inside the SSL object, unseen by select.
                        while data and source is tls and tls.pending():
                            data += tls.recv(tls.pending())
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    target.setblocking(True)
                    try:
                        target.sendall(data)
                    except OSError:
                        return
                    finally:
                        target.setblocking(False)
        finally:
            selector.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.built", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or reuse) the artifacts; print the folder")
    b.add_argument("--arch", choices=("arm64", "x86_64"), help="default: this machine's")
    sub.add_parser("prefetch", help="build in a detached process and return at once")
    sub.add_parser("tools", help="install the SAM CLI into .venv-sam")
    sub.add_parser("python313", help="print the Python 3.13 the build uses")
    args = parser.parse_args(argv)
    try:
        if args.command == "tools":
            print(ensure_tools())
        elif args.command == "python313":
            print(find_python313())
        elif args.command == "prefetch":
            print(prefetch())
        else:
            result = build(args.arch)
            print(json.dumps({"root": str(result.root), **result.info}, indent=2))
    except Unavailable as why:
        print(f"not built: {why}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
