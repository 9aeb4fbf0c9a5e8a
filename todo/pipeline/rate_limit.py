"""Per-user rate limits (flask-limiter), keyed by the token's `sub`, or by client address
when the request carries no valid token. Counters live in Redis when
`RATELIMIT_STORAGE_URI` points there (shared by every worker), else in process memory.

Two limits apply across all endpoints together: one on every request, a tighter one on
writes. Health checks, the docs and CORS preflights are not limited.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import ApplicationLimit, Limiter

from todo.pipeline.auth import PUBLIC_ENDPOINTS

LIMITER = "todo.limiter"
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


def setup(app: Flask) -> None:
    """Create the limiter; it registers its own `before_request` check (where this step
    stands in the pipeline: after the caller is identified, before access is decided, so
    refused requests count too)."""
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
    app.extensions[LIMITER] = limiter
