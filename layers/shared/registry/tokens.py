"""Workspace auth tokens (seed: wsauth, Phase 30.1).

A token is 32 random bytes, URL-safe base64 without padding (43 chars). It
is shown to the agent once, in the first register response, and stored
only as its sha256 (32 raw bytes, the platform's BYTEA column) plus an
8-character prefix that identifies it in
support and audit work without revealing it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

TOKEN_BYTES = 32
PREFIX_LENGTH = 8

# 43 characters of the URL-safe alphabet: the only shape a token can have.
# Anything else in the header is refused before it reaches the database.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class MintedToken:
    plaintext: str
    sha256: bytes
    prefix: str

    def __repr__(self) -> str:  # never print the plaintext by accident
        return f"MintedToken(prefix={self.prefix!r})"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def hash_secret(secret: str) -> bytes:
    """sha256 of a registration secret, as the platform stores it
    (in SQL: ``sha256(convert_to(secret, 'UTF8'))``)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def mint() -> MintedToken:
    plaintext = secrets.token_urlsafe(TOKEN_BYTES)
    return MintedToken(plaintext=plaintext, sha256=hash_token(plaintext), prefix=plaintext[:PREFIX_LENGTH])


class BadAuthorization(ValueError):
    """An Authorization header was sent but is not a well-formed bearer token."""


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header.

    None when there is no header at all. A header that is present but is not
    exactly ``Bearer`` (any case), one space and a token of the right shape
    raises BadAuthorization: a caller that sends something odd is told so
    instead of being treated as anonymous.
    """
    if header is None or header == "":
        return None
    scheme, sep, token = header.partition(" ")
    if not sep or scheme.lower() != "bearer" or not _TOKEN_SHAPE.fullmatch(token):
        raise BadAuthorization("authorization header must be 'Bearer <workspace token>'")
    return token
