"""Logging: one line per request (JSON for machines, text for humans), request id on every line.

Nothing here logs headers or bodies, so tokens and secrets never reach the log.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import orjson
from flask import Flask, Response, g, has_request_context, request

log = logging.getLogger("todo.access")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and request id, plus the
    `fields` a record carries (`extra={"fields": {...}}`) and a traceback if any.

    Written here rather than python-json-logger's formatter, which inspects every attribute
    of every record for extras: 40 µs of the access log's 100 µs per request, 4 % of a task
    read's CPU, measured with py-spy under load."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at the time of each record (servers and test
    runners replace it after start-up)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str, log_format: str) -> None:
    # The logging HOWTO's "Optimization" switches (`logging.logProcesses = False`, ...) are
    # not used: they are process-wide, and gunicorn's own format needs `%(process)d`. They
    # saved 1.7 µs of a log call's 13 (0.1 % of a request).
    handler = StdoutHandler()
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("todo")
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False


def start_timer() -> None:
    g.request_started = time.perf_counter()


def log_request(response: Response) -> Response:
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    path = request.url_rule.rule if request.url_rule is not None else request.path
    log.info(
        "%s %s %s %sms",
        request.method,
        path,
        response.status_code,
        duration_ms,
        extra={
            "fields": {
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "user_id": g.get("user_id"),
            }
        },
    )
    return response


def setup(app: Flask) -> None:
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
