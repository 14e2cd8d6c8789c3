"""How large what a request stores and publishes may be, decided before
anything is written.

The body limit (MAX_BODY_BYTES) bounds what is *sent*, not what is stored:
Postgres keeps JSON numbers as NUMERIC and prints them in full, so the 5
bytes of ``1e308`` read back as 309 digits, and a 64 KiB card of them became
a 3.4 MB event that PutEvents refused and the relay dropped: an accepted
request whose event was never delivered. So every number is measured in the
form Postgres will print (``stored_number``), numbers longer than
MAX_NUMBER_CHARS are refused with the field that holds them, and an agent
card is measured as stored (``stored_size``) against MAX_STORED_CARD_BYTES,
which keeps every event that carries it far below PutEvents' 256 KB entry
limit. Nothing is rewritten: a card is stored as the agent sent it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

# int64 is 19 digits, a float's full precision about 17 significant digits;
# 40 also leaves room for a float's leading zeros (1.5e-20 is 23 characters
# once stored). Longer numbers belong in strings.
MAX_NUMBER_CHARS = 40
# A card as stored (compact JSON, numbers in full) is at most this large: the
# body limit's worth, so number notation cannot enlarge what is kept, what
# discovery hands out (peers lists many cards) or what an event carries.
MAX_STORED_CARD_BYTES = 64 * 1024
# Python refuses to convert longer integer literals (sys.int_info); the body
# is refused before it gets there, with our own words.
MAX_INTEGER_LITERAL_DIGITS = 4300


class TooLarge(ValueError):
    """What was sent would be too large once stored; str(error) is the reason."""


def stored_number(value: int | float) -> str:
    """The number as Postgres stores and prints it in JSONB (NUMERIC, in full):
    1e308 -> '1' and 308 zeros, 1.5e-10 -> '0.00000000015'. The text sent is
    Python's repr, which is what json.dumps writes."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)), "f")


def number_too_long(value: int | float) -> str | None:
    """Why this number may not be stored, or None."""
    length = len(stored_number(value).lstrip("-"))
    if length > MAX_NUMBER_CHARS:
        return f"number is {length} digits once stored (at most {MAX_NUMBER_CHARS}); send it as a string"
    return None


def stored_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON with every number written out as
    Postgres prints it: what a reader gets back, and an upper bound of what
    an event built from the stored value carries."""
    if isinstance(value, bool) or value is None:
        return 4 if value is not False else 5
    if isinstance(value, (int, float)):
        return len(stored_number(value))
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if isinstance(value, dict):
        items = sum(stored_size(k) + 1 + stored_size(v) for k, v in value.items())
        return 2 + items + max(len(value) - 1, 0)
    if isinstance(value, list):
        return 2 + sum(stored_size(v) for v in value) + max(len(value) - 1, 0)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def check_card(card: dict[str, Any]) -> int:
    """The card's stored size, or TooLarge (413) with the reason."""
    size = stored_size(card)
    if size > MAX_STORED_CARD_BYTES:
        raise TooLarge(f"agent_card is {size:,} bytes once stored (numbers written out in full); at most {MAX_STORED_CARD_BYTES:,}")
    return size
