"""Cursors of the changes feed: a change number, marked with whose it is.

Opaque to clients (base64url of `1.<number>.<user mark>`). The mark is a digest of the user
id, so a cursor of another user's feed is told apart (400) from one of this user's."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from todo.api.problems import ProblemError

VERSION = "1"
CURSOR_TEXT = re.compile(r"1\.(0|[1-9][0-9]{0,18})\.([0-9a-f]{12})")


def _mark(user_id: str) -> str:
    return hashlib.sha256(user_id.encode(errors="surrogatepass")).hexdigest()[:12]


def encode_cursor(user_id: str, change_number: int) -> str:
    text = f"{VERSION}.{change_number}.{_mark(user_id)}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(user_id: str, cursor: str, latest: int) -> int:
    """The change number in `cursor`; 400 for one that is not this user's feed's or is
    ahead of the user's `latest` change (made up)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = CURSOR_TEXT.fullmatch(text)
    if match is None or match.group(2) != _mark(user_id) or int(match.group(1)) > latest:
        raise ProblemError(
            400,
            "The cursor is not one this feed gave you; start again without a cursor.",
            errors={"query": {"cursor": ["Not a cursor of this user's changes."]}},
        )
    return int(match.group(1))
