"""Every error, from every layer, becomes an `application/problem+json` response.

HTTP errors raised by werkzeug, webargs and flask-smorest are rendered by `ProblemApi`
(`todo.api`); this module handles our own `ProblemError`, database failures and anything
unexpected.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app
from sqlalchemy import exc as sa_exc

from todo.database import UNAVAILABLE_ERRORS
from todo.problems import ProblemError, problem_response

log = logging.getLogger("todo.errors")


def handle_problem(error: ProblemError) -> Response:
    return problem_response(
        error.status, error.detail, errors=error.errors, headers=error.headers, title=error.title
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
    app.register_error_handler(ProblemError, handle_problem)
    for error_class in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, handle_database_unavailable)
    app.register_error_handler(sa_exc.IntegrityError, handle_integrity_error)
    app.register_error_handler(Exception, handle_unexpected)
