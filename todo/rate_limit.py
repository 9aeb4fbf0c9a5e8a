"""Per-user rate limits (flask-limiter), keyed by the token's `sub`, or by client address
when the request carries no valid token. Counters live in Redis when
`RATELIMIT_STORAGE_URI` points there (shared by every worker), else in process memory.

Two limits apply across all endpoints together: one on every request, a tighter one on
writes. Health checks, the docs and CORS preflights are not limited.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded

from todo import metrics
from todo.auth import PUBLIC_ENDPOINTS
from todo.problems import problem_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def rate_limit_key() -> str:
    user_id: str | None = g.get("user_id")
    if user_id is not None:
        return f"user:{user_id}"
    return f"ip:{request.remote_addr}"


def _exempt() -> bool:
    return request.method == "OPTIONS" or request.endpoint in PUBLIC_ENDPOINTS


def _exempt_unless_write() -> bool:
    return _exempt() or request.method in SAFE_METHODS


def handle_rate_limited(error: RateLimitExceeded) -> Response:
    # `error.limit` is the limit that was hit (`limiter.current_limit` holds the same one, but
    # as a RequestLimit, whose scope is only inside its storage key).
    metrics.count_rate_limit_refusal(error.limit.scope)
    limiter: Limiter = current_app.extensions["todo.limiter"]
    current = limiter.current_limit
    retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
    return problem_response(
        429,
        f"Too many requests: the limit is {error.description}. Retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


def init_app(app: Flask) -> None:
    """Registers the limiter's `before_request`; call it after the caller is identified and
    before access is decided, so refused requests count too."""
    config = app.config
    limiter = Limiter(
        rate_limit_key,
        application_limits=[
            ApplicationLimit(config["RATELIMIT_PER_USER"], exempt_when=_exempt, scope="all"),
            ApplicationLimit(
                config["RATELIMIT_WRITES_PER_USER"],
                exempt_when=_exempt_unless_write,
                scope="writes",
            ),
        ],
        storage_uri=config["RATELIMIT_STORAGE_URI"],
        strategy="moving-window",
        key_prefix=config["RATELIMIT_KEY_PREFIX"],
        # If Redis is unreachable, limit in memory rather than fail requests.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,
        enabled=config["RATELIMIT_ENABLED"],
    )
    limiter.init_app(app)
    app.extensions["todo.limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
