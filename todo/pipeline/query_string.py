"""The query string must be UTF-8: 400 otherwise.

werkzeug decodes it strictly the first time `request.args` is read (in a view's argument
parser), where bytes such as `%80` sent raw, not percent-encoded, would be a 500.
"""

from __future__ import annotations

from flask import request

from todo.api.problems import ProblemError


def check_query_string() -> None:
    raw = request.query_string
    if raw.isascii():
        return
    try:
        raw.decode()
    except UnicodeDecodeError:
        raise ProblemError(
            400, "The query string is not valid UTF-8; percent-encode its bytes."
        ) from None

