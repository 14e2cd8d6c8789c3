"""``python -m registry.admin`` over real HTTP: the admin routes served by
their functions (as the local runner serves them) on a loopback port,
against the test session's Postgres and Redis; the SigV4 signature
checked by recomputing it; --follow as a separate process stopped with
Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def api(registry):
    """The registry's routes over HTTP on 127.0.0.1, served as `make run`
    serves them (devstack.local's LocalApi on its werkzeug server): one warm
    container per function, each request a REST proxy event."""
    from devstack import functions as fn
    from devstack import httpserver, local

    invoker = local.Invoker()
    server = httpserver.serve("127.0.0.1", 0, local.MAX_REQUEST_BYTES)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    server.app = local.LocalApi(fn.discover(), invoker, local.Console(io.StringIO()), base)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    yield base
    server.shutdown()
    server.server_close()
    invoker.close()


def cli(*argv: str) -> tuple[int, str]:
    from registry import admin

    buffer = io.StringIO()
    code = admin.main(list(argv), out=admin.Out(stream=buffer, colour=False))
    return code, buffer.getvalue()


def test_summary_table_and_json(api, registry):
    registry.registered()
    ws, token = registry.registered()
    registry.heartbeat(ws, token, runtime_state="wedged")
    code, text = cli("--url", api, "summary")
    assert code == 0
    assert "online 1" in text and "degraded 1" in text and "self-preservation  normal" in text
    assert "fleet              2 (online + degraded)" in text and "feed head          e1." in text
    code, text = cli("summary", "--url", api, "--json")  # options after the command too
    assert code == 0 and json.loads(text)["workspaces"]["degraded"] == {"count": 1, "estimated": False}


def test_workspaces_table_filters_and_pages(api, registry):
    healthy, _ = registry.registered(card={"name": "healthy-agent", "skills": [{"id": "summarize"}]})
    wedged, token = registry.registered(card={"name": "wedged-agent", "skills": [{"id": "translate"}]})
    registry.heartbeat(wedged, token, runtime_state="wedged", sample_error="SDK init timeout")
    code, text = cli("--url", api, "workspaces", "--status", "degraded")
    lines = text.splitlines()
    assert code == 0 and lines[0].split() == ["STATUS", "NAME", "ID", "TASKS", "HEARTBEAT", "ERRORS", "SKILLS", "CURRENT", "TASK", "/", "LAST", "ERROR"]
    assert len(lines) == 2 and lines[1].split()[:3] == ["degraded", "wedged-agent", wedged]
    assert "translate" in lines[1] and "SDK init timeout" in lines[1]
    code, text = cli("--url", api, "workspaces", "--limit", "1")
    assert code == 0 and "more: add --cursor w1." in text
    code, text = cli("--url", api, "--json", "workspaces", "--limit", "1", "--all")
    assert [w["id"] for w in json.loads(text)["workspaces"]] == [wedged, healthy]
    code, text = cli("--url", api, "workspaces", "-q", "health", "--skill", "summarize")
    assert code == 0 and healthy in text and wedged not in text
    assert cli("--url", api, "workspaces", "--skill", "nope") == (0, "no workspaces match\n")


def test_one_workspace(api, registry):
    ws, token = registry.registered(card={"name": "detail-agent", "version": "2.0.0", "skills": [{"id": "search"}]})
    registry.heartbeat(ws, token, runtime_state="wedged", runtime_metadata={"idle_timeout_seconds": 600})
    code, text = cli("--url", api, "workspace", ws)
    assert code == 0, text
    assert "name                 detail-agent   (card version 2.0.0)" in text
    assert "status               degraded" in text and f"liveness key         ws:{ws} = online, expires in" in text
    assert '"idle_timeout_seconds":"600"' in text and f"{token[:8]}... (confirmed)" in text
    events = text.split("recent events (newest first)")[1]
    assert events.index("WORKSPACE_DEGRADED") < events.index("WORKSPACE_ONLINE")
    assert '"skills": [' in text  # the card, in full
    assert token not in text


def test_events_page_and_resume(api, registry):
    ws, token = registry.registered()
    code, text = cli("--url", api, "events")
    assert code == 0 and "WORKSPACE_ONLINE" in text
    cursor = text.strip().splitlines()[-1].split("--after ")[1]
    registry.update_card(ws, {"name": "v2"}, token)
    code, text = cli("--url", api, "events", "--after", cursor)
    assert code == 0 and "AGENT_CARD_UPDATED" in text and "WORKSPACE_ONLINE" not in text
    code, text = cli("--url", api, "--json", "events", "--type", "AGENT_CARD_UPDATED")
    assert [e["event_type"] for e in json.loads(text)["events"]] == ["AGENT_CARD_UPDATED"]
    code, text = cli("--url", api, "events", "--tail", "1")
    assert code == 0 and "AGENT_CARD_UPDATED" in text and "WORKSPACE_ONLINE" not in text


def test_refusals_and_unreachable_exit_1_with_the_reason(api, registry, capsys):
    from conftest import new_id

    assert cli("--url", api, "workspace", new_id())[0] == 1
    assert "404 no such workspace" in capsys.readouterr().err
    assert cli("--url", api, "workspaces", "--status", "bogus")[0] == 1
    assert "400 status: 'bogus' is not one of" in capsys.readouterr().err
    assert cli("--url", "http://127.0.0.1:1", "summary")[0] == 1
    assert "cannot reach http://127.0.0.1:1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli("--url", api, "workspace")
    assert usage.value.code == 2


def test_follow_prints_the_tail_then_new_events_until_ctrl_c(api, registry):
    before, _ = registry.registered()
    env = dict(os.environ, PYTHONPATH=str(REPO / "layers" / "shared"))
    follower = subprocess.Popen(
        [sys.executable, "-m", "registry.admin", "--url", api, "--json", "events", "--follow", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        registered = []
        deadline = time.monotonic() + 20
        lines: list[str] = []

        def read():
            for line in follower.stdout:
                lines.append(line)

        threading.Thread(target=read, daemon=True).start()
        while time.monotonic() < deadline and len(lines) < 1:  # the tail: the one event so far
            time.sleep(0.1)
        while time.monotonic() < deadline and len(lines) < 3:
            if len(registered) < 2:
                registered.append(registry.registered()[0])
            time.sleep(0.3)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
    events = [json.loads(line) for line in lines]
    assert [(e["workspace_id"], e["event_type"]) for e in events] == [(ws, "WORKSPACE_ONLINE") for ws in [before, *registered]]


# --------------------------------------------------------------- signing


def test_sigv4_signature_is_valid_for_execute_api(monkeypatch):
    """The CLI signs like an AWS SDK: recomputing the signature from what
    the server received, with the same credentials, gives the same value."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials


    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen["path"] = self.path
            seen["headers"] = {k.lower(): v for k, v in self.headers.items()}
            body = b'{"workspaces": [], "next_cursor": null}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    try:
        code, _ = cli("--url", base + "/prod", "--sign", "--region", "eu-west-1", "workspaces", "-q", "research agent", "--status", "degraded")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0
    headers = seen["headers"]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token-example"
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
    request = AWSRequest(method="GET", url=base + seen["path"], headers={k: headers[k] for k in signed})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"), "execute-api", "eu-west-1")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert headers["authorization"].endswith(f"Signature={expected}")
    # spaces as %20: SigV4 canonicalises "+" differently from API Gateway
    assert seen["path"] == "/prod/admin/workspaces?status=degraded&q=research%20agent"


def test_signing_is_automatic_for_execute_api_urls_only():
    from registry.admin import Client

    deployed = Client("https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod")
    assert deployed.sign and deployed.region == "eu-west-1"
    assert not Client("http://127.0.0.1:3000").sign
    assert Client("https://registry.example.com", sign=True, region="us-east-2").sign


def test_no_credentials_is_a_clear_error(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    assert cli("--url", "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod", "summary")[0] == 1
    assert "no AWS credentials found" in capsys.readouterr().err
