"""Workspace tokens: format, hashing and strict bearer parsing (no servers)."""

import base64
import hashlib

import pytest

from registry import tokens


def test_minted_token_is_32_random_bytes_urlsafe_base64():
    t = tokens.mint()
    assert len(t.plaintext) == 43
    raw = base64.urlsafe_b64decode(t.plaintext + "=")
    assert len(raw) == 32
    assert t.prefix == t.plaintext[:8]
    assert t.sha256 == hashlib.sha256(t.plaintext.encode()).digest()


def test_tokens_differ():
    assert len({tokens.mint().plaintext for _ in range(100)}) == 100


def test_repr_never_shows_plaintext():
    t = tokens.mint()
    assert t.plaintext not in repr(t)
    assert t.plaintext not in str(t)


def test_bearer_absent_is_none():
    assert tokens.bearer_token(None) is None
    assert tokens.bearer_token("") is None


def test_bearer_well_formed():
    t = tokens.mint().plaintext
    assert tokens.bearer_token(f"Bearer {t}") == t
    assert tokens.bearer_token(f"bearer {t}") == t  # the scheme is case-insensitive (RFC 7235)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer  {t}",
        "Bearer {t} extra",
        "Bearer {t}\n",
        "Bearer {t}=",
        "Bearer {short}",
        "Bearer {t}{t}",
        "{t}",
        "Bearer\t{t}",
        "Bearer {t}\x00",
    ],
)
def test_bearer_malformed_is_refused(header):
    t = tokens.mint().plaintext
    with pytest.raises(tokens.BadAuthorization):
        tokens.bearer_token(header.format(t=t, short=t[:20]))
