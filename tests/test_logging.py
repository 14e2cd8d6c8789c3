"""Secrets never reach the logs: tokens (plaintext or in headers) are not
in any log line of a full register / heartbeat / refusal cycle."""

import logging

from conftest import new_id


def test_tokens_never_logged(registry, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    ws = new_id()
    a = registry.register(ws)
    token = a.body["auth_token"]
    registry.heartbeat(ws, token, error_rate=0.9, current_task="x")
    registry.update_card(ws, {"v": 2}, token)
    registry.register(ws, token=token)
    registry.heartbeat(ws, token[:-1] + ("A" if token[-1] != "A" else "B"))  # wrong token
    registry.heartbeat(ws, headers={"Authorization": f"Token {token}"})  # malformed, still secret
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text
    assert ws in logged  # the logs are there...
    assert token not in logged  # ...the token is not
    assert token[:20] not in logged
