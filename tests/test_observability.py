"""The Tracer switch: real X-Ray tracing only where a daemon records it."""

import subprocess
import sys
from pathlib import Path

LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "shared")

PROBE = f"""
import sys
sys.path.insert(0, {LAYER!r})
from registry.observability import tracer
print(type(tracer).__name__, 'aws_xray_sdk' in sys.modules)
"""


def probe(**env) -> str:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "POWERTOOLS_TRACE"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_no_daemon_no_xray_sdk_import():
    assert probe() == "_NoTracer False"


def test_active_tracing_builds_the_powertools_tracer():
    assert probe(AWS_XRAY_DAEMON_ADDRESS="169.254.79.129:2000", AWS_LAMBDA_FUNCTION_NAME="f") == "Tracer True"


def test_powertools_switch_still_turns_it_off():
    assert probe(AWS_XRAY_DAEMON_ADDRESS="169.254.79.129:2000", POWERTOOLS_TRACE_DISABLED="true") == "_NoTracer False"


def test_pass_through_decorators():
    from registry.observability import _NoTracer

    t = _NoTracer()

    def f(x):
        return x + 1

    assert t.capture_lambda_handler(f) is f
    assert t.capture_method(capture_response=False)(f) is f
