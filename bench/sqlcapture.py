"""What the service sends to PostgreSQL for one request: every statement, exactly as sent.

The app runs in-process, built by `create_app()` from the same production environment the
bench gives gunicorn, with one change: its psycopg2 connections are a recording subclass.
Each statement is recorded as psycopg2 sent it (`cursor.query`, literals inlined: psycopg2
uses the simple query protocol), together with the `BEGIN` psycopg2 sends implicitly before
the first statement of a transaction and the `COMMIT`/`ROLLBACK` that ends one (psycopg2 sends
those only when a transaction is open, and so does the recorder). SQLAlchemy's pool pre-ping
(`SELECT 1` in autocommit on every checkout) goes through the same cursor class and is
recorded too.

The request is made twice and only the second is kept: the first opens the pooled
connection (and runs SQLAlchemy's dialect initialisation), as happens once per connection in
gunicorn too. Checked against the server's own log (`log_statement = all`), see README.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg2.extensions

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


def _recording_connection(log: list[str]) -> type[psycopg2.extensions.connection]:
    class RecordingCursor(psycopg2.extensions.cursor):
        def execute(self, query: Any, vars: Any = None) -> Any:
            connection = self.connection
            if not connection.autocommit and connection.info.transaction_status == IDLE:
                log.append("BEGIN")
            try:
                return super().execute(query, vars)
            finally:
                if self.query is not None:
                    log.append(self.query.decode())

    class RecordingConnection(psycopg2.extensions.connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.cursor_factory = RecordingCursor

        def commit(self) -> None:
            if not self.autocommit and self.info.transaction_status != IDLE:
                log.append("COMMIT")
            super().commit()

        def rollback(self) -> None:
            if not self.autocommit and self.info.transaction_status != IDLE:
                log.append("ROLLBACK")
            super().rollback()

    return RecordingConnection


def request_statements(
    app_environ: Mapping[str, str], path: str, headers: Mapping[str, str]
) -> list[str]:
    """The statements one `GET path` sends to the database, in order."""
    from config import load_config
    from todo import create_app
    from todo.extensions import db

    log: list[str] = []
    config = load_config("production", environ={**app_environ, "LOG_LEVEL": "WARNING"})
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    options["connect_args"] = {
        **options.get("connect_args", {}),
        "connection_factory": _recording_connection(log),
    }
    app = create_app(config)
    client = app.test_client()
    try:
        client.get(path, headers=dict(headers))
        log.clear()
        response = client.get(path, headers=dict(headers))
        if response.status_code != 200:
            raise RuntimeError(
                f"GET {path} answered {response.status_code}: {response.get_data(as_text=True)}"
            )
        return list(log)
    finally:
        with app.app_context():
            db.engine.dispose()
