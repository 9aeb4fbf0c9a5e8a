"""Request bodies of writes: JSON only (415 otherwise) and no larger than the limit (413)."""

from __future__ import annotations

from flask import current_app, request

from todo.api.problems import ProblemError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    ).lower()


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def check_request_body() -> None:
    if request.method not in WRITE_METHODS or request.url_rule is None or not _has_body():
        return
    limit: int = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(413, f"The request body exceeds the limit of {limit} bytes.")
    if not is_json_mimetype(request.mimetype):
        raise ProblemError(
            415, "Send the body as JSON with `Content-Type: application/json`."
        )

