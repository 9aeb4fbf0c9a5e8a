"""CORS for the frontend's origins, on requests that carry an `Origin` header.

flask-cors computes the options and writes the headers (`get_cors_options`,
`set_cors_headers`: the functions of `flask_cors.core` that its `CORS` extension and its
`cross_origin` decorator both run on). Its extension would also match every request's path
against its resource patterns, even without an `Origin` (about 25 µs each, 3-4 % of a task
read's CPU), and it documents no hook to skip that; so this step calls those two functions
itself, only for cross-origin requests. flask-cors is pinned (requirements.txt) and
the CORS tests (tests/test_errors.py, test_auth.py, test_browser.py) check the headers
they write, preflights included.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, request
from flask_cors.core import get_cors_options, set_cors_headers

OPTIONS_KEY = "todo.cors"


def setup(app: Flask) -> None:
    app.extensions[OPTIONS_KEY] = get_cors_options(app, {
        "origins": app.config["ALLOWED_ORIGINS"],
        "supports_credentials": True,
        "allow_headers": [
            "Authorization", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key",
            "X-Request-ID",
        ],
        "expose_headers": ["Location", "ETag", "X-Request-ID", "Idempotent-Replayed"],
        "max_age": 600,
        "vary_header": True,
        "always_send": False,  # no CORS headers on requests without an Origin
    })


def add_cors_headers(response: Response) -> Response:
    if "Origin" not in request.headers:
        return response
    options: Any = current_app.extensions[OPTIONS_KEY]
    return set_cors_headers(response, options)
