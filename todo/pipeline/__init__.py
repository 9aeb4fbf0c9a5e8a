"""The request pipeline: the steps every request passes through, in order (`PIPELINE`).

A step may act before the view (`before`: return nothing to go on, raise a
`ProblemError` to answer at once, or return a response to answer with it instead of the
view's: a replayed idempotent response) and after it (`after`: adjust the response), and may need
`setup` when the app is built. Steps are layers: the `before`s run top to bottom, the
`after`s bottom to top, so the first step sees the request first and the response last. A
request refused at one step still goes back out through every step's `after` (an error gets
its request id, its CORS headers and its log line like any answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask import Flask, Response

from todo.pipeline import (
    access_log,
    auth,
    cors,
    idempotency,
    metrics,
    query_string,
    rate_limit,
    request_body,
    request_id,
    security_headers,
)


@dataclass(frozen=True)
class Step:
    name: str
    before: Callable[[], Response | None] | None = None
    after: Callable[[Response], Response] | None = None
    # Run once when the app is built; it may register the step's hooks itself, as
    # flask-limiter's `init_app` does, or only under some settings, as metrics does.
    setup: Callable[[Flask], None] | None = None


PIPELINE: tuple[Step, ...] = (
    Step("access log", access_log.start_timer, access_log.log_request, access_log.setup),
    Step("metrics", setup=metrics.setup),  # counts and times requests if METRICS_TOKEN is set
    Step("request id", request_id.assign_request_id, request_id.echo_request_id),
    Step("CORS", after=cors.add_cors_headers, setup=cors.setup),
    Step("security headers", after=security_headers.add_security_headers),
    Step("query string", query_string.check_query_string),
    Step("identify the caller", auth.identify_caller, setup=auth.setup),  # token -> g.user_id
    Step("rate limit", setup=rate_limit.setup),  # per caller, refused callers included
    Step("authorize", auth.authorize_request),  # 401 without a valid token, 403 for others' paths
    Step("request body", request_body.check_request_body),  # 413, 415
    # Last: only a request that is authorized and whose body passed the checks above claims
    # its Idempotency-Key (a refused one never takes a key, and its retry is not refused as
    # in flight); and its `after` is the first to see the view's response, before any step
    # adds headers of its own to it (a replay gets those again, fresh).
    Step(
        "idempotent retries",
        idempotency.claim_key,  # 400 bad key, 409 in flight, 422 another request, replay
        idempotency.keep_response,  # keeps a 2xx, releases the key otherwise
        idempotency.setup,  # also releases a claim left at teardown
    ),
)


def install(app: Flask, steps: Sequence[Step] = PIPELINE) -> None:
    # Flask runs `before_request` hooks in the order registered, `after_request` hooks in
    # the reverse order: registering both in the steps' order makes them layers.
    for step in steps:
        if step.setup is not None:
            step.setup(app)
        if step.before is not None:
            app.before_request(step.before)
        if step.after is not None:
            app.after_request(step.after)
