"""Prometheus metrics for operators: `GET /metrics`, on when `METRICS_TOKEN` is set.

Measured: every request the app answers, by route template (`unmatched` when no route
matched: 404s and 405s), method and status, with its duration; the database pool's
connections in use and threads waiting for one (counted by `todo.data.database`); and rate-limit
refusals by the scope of the limit hit (`todo.pipeline.rate_limit`). Answers the gunicorn worker
gives before the app sees a request (400, 408, 414, 431 from `todo.serving`) are not counted.

gunicorn's workers share no memory, so under gunicorn each writes its values to files of its
own under `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode; gunicorn.conf.py
makes the directory before the workers fork and drops an exited worker's gauges), and a
scrape of any worker reads and adds up all of them. prometheus_client decides between process
memory and those files once, when it is first imported, so it is imported here only when an
app with metrics is built, in the worker: gunicorn's master imports `todo` (for the worker
class) before its `on_starting` hook has set the directory.

Without `METRICS_TOKEN` nothing is recorded and `/metrics` is a 404 like any unknown path.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, g, request

from todo.api.problems import ProblemError
from todo.pipeline.auth import bearer_token

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.registry import Collector

RECORDER = "todo.pipeline.metrics"
EXPORTER = "todo.pipeline.metrics.exporter"
# From a cached read (1-2 ms) to the statement timeout (5 s); anything slower is in +Inf.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "unmatched"
# Label values come from small fixed sets, so no client can create series at will (routes are
# the app's URL rules; statuses the few the app answers with).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
RATE_LIMIT_SCOPES = ("all", "writes")


@dataclass(frozen=True)
class Instruments:
    """This process's metrics (prometheus_client keeps one set per process, whatever the
    number of apps built in it)."""

    requests: Counter
    request_duration: Histogram
    pool_in_use: Gauge
    pool_waiting: Gauge
    rate_limit_refusals: Counter


_instruments: Instruments | None = None
_instruments_lock = threading.Lock()


def instruments() -> Instruments:
    """This process's metrics, created on first use."""
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            _instruments = _create_instruments()
        return _instruments


def _create_instruments() -> Instruments:
    # Imported here rather than at the top: see the module docstring.
    from prometheus_client import Counter, Gauge, Histogram

    refusals = Counter(
        "todo_rate_limit_refusals_total",
        "Requests refused with 429, by the scope of the limit hit (all requests, or writes).",
        ("scope",),
    )
    for scope in RATE_LIMIT_SCOPES:  # present at 0 before the first refusal
        refusals.labels(scope)
    return Instruments(
        requests=Counter(
            "todo_http_requests_total",
            "HTTP requests answered by the app, by route template, method and status.",
            ("route", "method", "status"),
        ),
        request_duration=Histogram(
            "todo_http_request_duration_seconds",
            "Time from the app receiving a request to its response, by route template and"
            " method.",
            ("route", "method"),
            buckets=DURATION_BUCKETS,
        ),
        pool_in_use=Gauge(
            "todo_db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            multiprocess_mode="livesum",
        ),
        pool_waiting=Gauge(
            "todo_db_pool_waiting",
            "Threads checking a connection out of the pool (waiting for a free one, or for a"
            " new one to connect).",
            multiprocess_mode="livesum",
        ),
        rate_limit_refusals=refusals,
    )


def enabled(config: Mapping[str, Any]) -> bool:
    return bool(config["METRICS_TOKEN"])


def instruments_if_enabled(config: Mapping[str, Any]) -> Instruments | None:
    """The metrics to record into, or None when metrics are off (nothing is recorded)."""
    return instruments() if enabled(config) else None


class RequestMetrics:
    """Counts and times each request (`record`, an `after_request` hook)."""

    def __init__(self, metrics: Instruments) -> None:
        self.metrics = metrics
        # (route, method, status) -> the counter's and the histogram's series for it. Finding
        # a series with `labels()` costs as much as updating it: a counter increment plus a
        # histogram observation in multiprocess mode, 10,000 times, took 5.6-8.6 µs of CPU
        # each through `labels()`, 3.0-5.0 µs from this dict (this hook in all: 9-11 µs, of
        # which ~1 µs per read of `request` or `g`; the 2-core machine shared, load 7-15).
        # Bounded: each part of the key comes from a fixed set.
        self.cached_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        method = request.method
        if method not in METHODS:
            method = OTHER
        key = (route, method, response.status_code)
        series = self.cached_series.get(key)
        if series is None:
            series = self.cached_series[key] = (
                self.metrics.requests.labels(route, method, str(response.status_code)),
                self.metrics.request_duration.labels(route, method),
            )
        series[0].inc()
        # The access log's timer (`todo.pipeline.access_log.start_timer`, the first before_request
        # hook) is the request's start for both.
        started: float | None = g.get("request_started")
        if started is not None:
            series[1].observe(time.perf_counter() - started)
        return response


def count_rate_limit_refusal(scope: object) -> None:
    """Count a 429 (`todo.pipeline.rate_limit`); nothing when metrics are off."""
    recorder: RequestMetrics | None = current_app.extensions.get(RECORDER)
    if recorder is not None:
        label = scope if isinstance(scope, str) and scope in RATE_LIMIT_SCOPES else OTHER
        recorder.metrics.rate_limit_refusals.labels(label).inc()


@dataclass(frozen=True)
class Exporter:
    token: bytes
    registry: Collector
    render: Callable[[Collector], bytes]  # prometheus_client.generate_latest
    content_type: str


def _exporter(token: str) -> Exporter:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry: Collector = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every worker's files, the dead ones' included (their counts still happened).
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Exporter(token.encode(), registry, generate_latest, CONTENT_TYPE_LATEST)


blp = Blueprint("metrics", __name__)


@blp.get("/metrics")
def scrape() -> Response:
    """Every metric in the Prometheus text format, for `Authorization: Bearer <METRICS_TOKEN>`."""
    exporter: Exporter = current_app.extensions[EXPORTER]
    token = bearer_token()
    if token is None:
        raise ProblemError(
            401,
            "A metrics token is required: send `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode(), exporter.token):
        raise ProblemError(401, "The metrics token is not valid.",
                           headers={"WWW-Authenticate": "Bearer"})
    body: bytes = exporter.render(exporter.registry)
    return current_app.response_class(
        body, content_type=exporter.content_type, headers={"Cache-Control": "no-store"}
    )


def setup(app: Flask) -> None:
    """Record requests (the step's `after` hook) when `METRICS_TOKEN` is set, else nothing.
    (`/metrics` itself is the `blp` blueprint, registered only when metrics are on.)"""
    if not enabled(app.config):
        return
    recorder = RequestMetrics(instruments())
    app.extensions[RECORDER] = recorder
    app.extensions[EXPORTER] = _exporter(app.config["METRICS_TOKEN"])
    app.after_request(recorder.record)
