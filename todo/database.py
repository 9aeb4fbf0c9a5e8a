"""Engine behaviour per backend, and which database errors mean "unavailable, retry"."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from todo.extensions import db

# Connection refused or lost, pool exhausted, statement timeout, lock timeout, deadlock:
# the request may succeed if retried, so these are 503 rather than 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    elif engine.dialect.name == "postgresql":
        _install_statement_timeout(engine, app.config["DB_STATEMENT_TIMEOUT_MS"])


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL lets readers proceed while a writer commits.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _install_statement_timeout(engine: Engine, timeout_ms: int) -> None:
    """Bound every transaction's statements. `SET LOCAL` lasts for the transaction only, so it
    also works through a transaction-mode pooler (Neon's `-pooler` endpoint, PgBouncer)."""
    statement = f"SET LOCAL statement_timeout = {int(timeout_ms)}"

    @event.listens_for(engine, "begin")
    def set_statement_timeout(connection: Any) -> None:
        connection.exec_driver_sql(statement)


def dialect_insert(table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports `ON CONFLICT` on the current backend."""
    if db.session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
