"""Every error handler: whatever goes wrong, from any layer, is answered as an
`application/problem+json` response (todo/api/problems.py)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app
from flask_limiter import Limiter, RateLimitExceeded
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from todo.api.problems import ProblemError, problem_response, validation_detail
from todo.data.database import UNAVAILABLE_ERRORS
from todo.pipeline import metrics
from todo.pipeline.rate_limit import LIMITER

log = logging.getLogger("todo.errors")


def handle_problem(error: ProblemError) -> Response:
    return problem_response(
        error.status, error.detail, errors=error.errors, headers=error.headers, title=error.title
    )


def handle_http_exception(error: HTTPException) -> Response:
    """Render a werkzeug/webargs HTTP error (routing, 405, 413, validation) as a problem."""
    status = error.code or 500
    headers: dict[str, str] = {}
    # werkzeug puts `Allow` (405) and similar headers on the exception itself.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            headers[name] = value
    data = getattr(error, "data", None) or {}
    headers.update(data.get("headers") or {})
    errors = _string_keys(data.get("errors") or data.get("messages"))
    if errors:
        return problem_response(400 if status == 422 else status, validation_detail(errors),
                                errors=errors, headers=headers)
    detail = data.get("message") or error.description or HTTPStatus(status).phrase
    return problem_response(status, str(detail), headers=headers)


def _string_keys(messages: Any) -> Any:
    """marshmallow keys the errors of list items by index (`{"tags": {0: [...]}}`); JSON
    object keys must be strings."""
    if isinstance(messages, Mapping):
        return {str(key): _string_keys(value) for key, value in messages.items()}
    return messages


def handle_rate_limited(error: RateLimitExceeded) -> Response:
    # `error.limit` is the limit that was hit (`limiter.current_limit` holds the same one, but
    # as a RequestLimit, whose scope is only inside its storage key).
    metrics.count_rate_limit_refusal(error.limit.scope)
    limiter: Limiter = current_app.extensions[LIMITER]
    current = limiter.current_limit
    retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
    return problem_response(
        429,
        f"Too many requests: the limit is {error.description}. Retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


def handle_database_unavailable(error: Exception) -> Response:
    # The driver's message names the host but never the password; it stays in the log.
    log.warning("database unavailable: %s", _one_line(error))
    retry_after = str(current_app.config["DB_RETRY_AFTER_SECONDS"])
    return problem_response(
        503,
        "The database is unavailable or too slow right now; retry shortly.",
        headers={"Retry-After": retry_after},
    )


def handle_integrity_error(error: sa_exc.IntegrityError) -> Response:
    log.warning("integrity error: %s", _one_line(error))
    return problem_response(409, "The change conflicts with the current state; retry it.")


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled exception")
    return problem_response(500, "An unexpected error occurred; it has been logged.")


def _one_line(error: Exception) -> str:
    return " ".join(str(getattr(error, "orig", None) or error).split())[:300]


def init_app(app: Flask) -> None:
    """Register every handler. Call it after `api.init_app`: flask-smorest registers its own
    HTTPException handler there, which this one replaces."""
    app.register_error_handler(ProblemError, handle_problem)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    for error_class in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, handle_database_unavailable)
    app.register_error_handler(sa_exc.IntegrityError, handle_integrity_error)
    app.register_error_handler(Exception, handle_unexpected)
