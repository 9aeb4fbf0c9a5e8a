"""The request log: one JSON line per request with what operators need, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import threading

from tests.conftest import SECRET, make_config, make_token
from todo import create_app
from todo.extensions import db


def log_lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_one_json_line_per_request_with_the_fields_operators_need(client, capsys):
    token = make_token("logged-user")
    client.post("/api/logged-user/tasks", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"})
    client.get("/api/logged-user/tasks?limit=0", headers={"Authorization": f"Bearer {token}"})
    client.get("/health")
    access = [line for line in log_lines(capsys.readouterr().out) if line["logger"] == "todo.access"]
    assert [(line["method"], line["path"], line["status"]) for line in access] == [
        ("POST", "/api/<user_id>/tasks", 201),
        ("GET", "/api/<user_id>/tasks", 400),
        ("GET", "/health", 200),
    ]
    for line in access:
        assert set(line) >= {"time", "level", "method", "path", "status", "duration_ms", "user_id", "request_id"}
        assert isinstance(line["duration_ms"], float)
    assert access[0]["user_id"] == "logged-user" and access[2]["user_id"] is None


def test_secrets_and_tokens_never_reach_the_log(database_url, capsys):
    password = "sup3r-s3cret-db-password"
    apps = [
        create_app(make_config(database_url)),
        create_app(make_config(f"postgresql://postgres:{password}@127.0.0.1:1/nowhere")),
    ]
    good = make_token("victim")
    forged = make_token("victim", key="not-the-secret-" * 3)
    expired = make_token("victim", exp=1)
    for app in apps:
        client = app.test_client()
        for token in (good, forged, expired):
            headers = {"Authorization": f"Bearer {token}", "Cookie": f"session={token}"}
            client.get("/api/victim/tasks", headers=headers)
            client.post("/api/victim/tasks", json={"title": "x", "password": password}, headers=headers)
            client.get("/api/someone-else/tasks", headers=headers)
        client.get("/health/ready")
        with app.app_context():
            db.engine.dispose()
    output = capsys.readouterr()
    text = output.out + output.err
    assert "database unavailable" in text  # the outage was logged...
    for secret in (SECRET, password, good, forged, expired, good.split(".")[2]):
        assert secret not in text  # ...but no secret, token or signature was


def test_text_format_for_humans(database_url, capsys):
    app = create_app(make_config(database_url, LOG_FORMAT="text"))
    app.test_client().get("/health", headers={"X-Request-ID": "human-1"})
    line = [line for line in capsys.readouterr().out.splitlines() if "todo.access" in line][-1]
    assert "[human-1]" in line and "GET /health 200" in line
    with app.app_context():
        db.engine.dispose()


# Every attribute a LogRecord documents: some formatter in the process may use any of them.
EVERY_RECORD_ATTRIBUTE = (
    "%(asctime)s %(created)f %(filename)s %(funcName)s %(levelname)s %(levelno)d %(lineno)d "
    "%(module)s %(msecs)d %(name)s %(pathname)s %(process)d %(processName)s "
    "%(relativeCreated)d %(thread)d %(threadName)s %(message)s"
)


def test_other_loggers_in_the_process_can_format_every_record_attribute(client):
    """The app once switched off `logging.logProcesses` for the whole process, and gunicorn's
    `%(process)d` lines then failed to format (a "Logging error" block instead)."""
    client.get("/health")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(EVERY_RECORD_ATTRIBUTE))
    logger = logging.getLogger("gunicorn.error.test")
    logger.addHandler(handler)
    try:
        logger.warning("Invalid request from ip=127.0.0.1: Invalid HTTP Header")
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert line.endswith("Invalid request from ip=127.0.0.1: Invalid HTTP Header\n"), line
    assert f" {os.getpid()} MainProcess " in line
    assert f" {threading.get_ident()} {threading.current_thread().name} " in line
    assert "test_other_loggers_in_the_process_can_format_every_record_attribute" in line
