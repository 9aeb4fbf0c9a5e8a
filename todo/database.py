"""Engine behaviour per backend, and which database errors mean "unavailable, retry"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc

from todo.extensions import db

AUTOCOMMIT = "AUTOCOMMIT"
TIMEOUT_PENDING = "todo.statement_timeout_pending"

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
    # Same pool and events as the app's engine; only the isolation level differs.
    app.extensions["todo.read_engine"] = engine.execution_options(isolation_level=AUTOCOMMIT)
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
    """Bound every transaction's statements with `SET LOCAL statement_timeout`.

    `SET LOCAL` lasts for the transaction only, so it also works through a transaction-mode
    pooler (Neon's `-pooler` endpoint, PgBouncer). It travels in the same round trip as the
    transaction's first statement (`SET LOCAL ...; SELECT ...`), and in autocommit (reads,
    see `read_connection`) with every statement, whose one-query implicit transaction it bounds.
    """
    prefix = f"SET LOCAL statement_timeout = {int(timeout_ms)}; "

    @event.listens_for(engine, "begin")
    def mark_transaction_unbounded(connection: Connection) -> None:
        connection.info[TIMEOUT_PENDING] = True

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def bound_statement(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        if connection.get_execution_options().get("isolation_level") == AUTOCOMMIT:
            return prefix + statement, parameters
        if connection.info.pop(TIMEOUT_PENDING, False):
            return prefix + statement, parameters
        return statement, parameters


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A connection for a request that only reads, returned to the pool as soon as the
    reads are done. It runs in autocommit: each read is one statement and its own
    transaction, so it costs a single round trip instead of BEGIN, the query and ROLLBACK."""
    engine: Engine = current_app.extensions["todo.read_engine"]
    with engine.connect() as connection:
        yield connection
