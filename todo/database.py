"""How requests talk to the database: `reading()` for reads, `writing()` for a transaction,
both on a connection from SQLAlchemy's pool, running `DriverStatement`s on driver cursors.

On PostgreSQL every round trip counts (each costs the service and the server CPU, and a
network hop to Neon), so:

- reads run in autocommit: one statement is one round trip and its own transaction;
- a transaction sends `BEGIN` in the same query string as its first statement, and
  statements whose results nothing needs (`Transaction.defer`: the per-user lock, updates,
  tag links) travel with the statement after them, or with `COMMIT`;
- every statement that starts a transaction carries `SET LOCAL statement_timeout` (it lasts
  for the transaction only, so it also works through a transaction-mode pooler such as
  Neon's `-pooler` endpoint or PgBouncer).

A query string holding several statements (`BEGIN; SET LOCAL ...; INSERT ...; SELECT ...`)
is one round trip; PostgreSQL still runs each statement with its own snapshot, in order.
On SQLite a transaction starts with `BEGIN IMMEDIATE` (writers queue for the lock up front)
and every statement runs when it is given.

Driver errors surface as SQLAlchemy's exception classes (`translated_errors`), so the error
handlers see one family whatever the path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from flask import Flask, current_app
from sqlalchemy import Dialect, Executable, event
from sqlalchemy import exc as sa_exc

from todo import connection_check
from todo.extensions import db
from todo.sql import DriverStatement, driver_statement

SERVER_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE

# Connection refused or lost, pool exhausted, statement timeout, lock timeout, deadlock:
# the request may succeed if retried, so these are 503 rather than 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


@dataclass(frozen=True)
class Settings:
    # Goes in front of each statement that starts a transaction on PostgreSQL.
    timeout_prefix: str


def timeout_prefix(milliseconds: int) -> str:
    return f"SET LOCAL statement_timeout = {int(milliseconds)}; "


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    timeout_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    postgresql = engine.dialect.name == "postgresql"
    app.extensions["todo.database"] = Settings(
        timeout_prefix=timeout_prefix(timeout_ms) if postgresql else ""
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    elif postgresql:
        connection_check.install(engine, app.config["DB_PING_AFTER_IDLE_SECONDS"])


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL lets readers proceed while a writer commits.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


@contextmanager
def translated_errors(dialect: Dialect, pooled: Any, sql: str | None = None,
                      parameters: Any = None) -> Iterator[None]:
    """Driver errors as SQLAlchemy's, and a connection the error shows is broken taken out
    of the pool."""
    try:
        yield
    except dialect.loaded_dbapi.Error as error:
        broken = pooled is not None and dialect.is_disconnect(error, pooled.dbapi_connection, None)
        if broken:
            pooled.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            sql, parameters, error, dialect.loaded_dbapi.Error,
            connection_invalidated=broken, dialect=dialect,
        ) from error


class Reads:
    """Statements on one pooled connection, each in its own implicit transaction: a
    request's reads. On PostgreSQL each carries the statement timeout in its query string."""

    def __init__(self, pooled: Any, dialect: Dialect, timeout_prefix: str) -> None:
        self.pooled = pooled
        self.dialect = dialect
        self.timeout_prefix = timeout_prefix

    def all(self, statement: Executable, parameters: Mapping[str, Any] | None = None
            ) -> list[tuple[Any, ...]]:
        compiled = driver_statement(statement, self.dialect)
        with self._cursor(compiled, parameters or {}) as cursor:
            return [compiled.row(row) for row in cursor.fetchall()]

    def first(self, statement: Executable, parameters: Mapping[str, Any] | None = None
              ) -> tuple[Any, ...] | None:
        compiled = driver_statement(statement, self.dialect)
        with self._cursor(compiled, parameters or {}) as cursor:
            row = cursor.fetchone()
        return compiled.row(row) if row is not None else None

    def scalar(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Any:
        row = self.first(statement, parameters)
        return row[0] if row is not None else None

    def _text(self, compiled: DriverStatement) -> str:
        """The query string that runs `compiled`."""
        return self.timeout_prefix + compiled.sql

    @contextmanager
    def _cursor(self, compiled: DriverStatement, parameters: Mapping[str, Any]
                ) -> Iterator[Any]:
        sql = self._text(compiled)
        values = compiled.parameters(parameters)
        cursor = self.pooled.cursor()
        try:
            with translated_errors(self.dialect, self.pooled, sql, values):
                cursor.execute(sql, values)
                yield cursor
        finally:
            cursor.close()


class Transaction(Reads):
    """One transaction; `writing()` commits it when its block ends.

    `defer` runs a statement whose result nothing needs: on PostgreSQL it travels in the
    query string of the next statement (or of `COMMIT`), and its errors surface there; on
    SQLite it runs at once."""

    def __init__(self, pooled: Any, dialect: Dialect, timeout_prefix: str) -> None:
        super().__init__(pooled, dialect, timeout_prefix)
        self.batching = dialect.name == "postgresql"
        # What goes in front of the next statement: at first `BEGIN` and the timeout.
        self.pending: list[str] = ["BEGIN", timeout_prefix.rstrip("; ")] if self.batching else []
        self.started = False  # whether anything has gone to the server
        self.finished = False

    def execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> int:
        """Run a statement now; the number of rows it changed."""
        compiled = driver_statement(statement, self.dialect)
        with self._cursor(compiled, parameters or {}) as cursor:
            return int(cursor.rowcount)

    def defer(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> None:
        compiled = driver_statement(statement, self.dialect)
        if not self.batching:
            self.execute(statement, parameters)
            return
        values = compiled.parameters(parameters or {})
        with self.pooled.cursor() as cursor:
            self.pending.append(cursor.mogrify(compiled.sql, values).decode())

    def _text(self, compiled: DriverStatement) -> str:
        self.started = True
        if not self.pending:
            return compiled.sql
        # psycopg2 %-formats the whole query string: literal `%` of the inlined statements
        # must be doubled (every statement has a parameter dict, possibly empty).
        pending = "; ".join(self.pending).replace("%", "%%")
        self.pending = []
        return f"{pending}; {compiled.sql}"

    def finish(self, statement: Executable, parameters: Mapping[str, Any] | None = None
               ) -> tuple[Any, ...] | None:
        """Run the transaction's last statement, commit, and return its first row.

        On PostgreSQL, when nothing has been sent yet, the deferred statements and this one
        go as one query string without `BEGIN`: PostgreSQL runs it as one implicit
        transaction and commits it at its end, so such a write is one round trip."""
        if self.batching and not self.started:
            del self.pending[0]  # BEGIN: the query string is the transaction
            self.finished = True
            return self.first(statement, parameters)
        row = self.first(statement, parameters)
        self.commit()
        return row

    def commit(self) -> None:
        if self.finished:
            return
        self.finished = True
        if not self.batching:
            with translated_errors(self.dialect, self.pooled):
                self.pooled.dbapi_connection.commit()
            return
        if not self.started and len(self.pending) == 2:  # nothing to run: BEGIN and timeout
            self.pending = []
            return
        sql = "; ".join([*self.pending, "COMMIT"])
        self.pending = []
        with self.pooled.cursor() as cursor, translated_errors(self.dialect, self.pooled, sql):
            cursor.execute(sql)


@contextmanager
def _pooled_connection(autocommit: bool) -> Iterator[tuple[Any, Dialect, Settings]]:
    """A connection from the pool; on PostgreSQL in autocommit (psycopg2's attribute,
    nothing goes to the server) for the block, and back to the pool as it expects them."""
    engine = db.engine
    dialect = engine.dialect
    settings: Settings = current_app.extensions["todo.database"]
    with translated_errors(dialect, None):
        pooled = engine.raw_connection()
    driver_connection: Any = pooled.dbapi_connection
    postgresql = dialect.name == "postgresql"
    try:
        if postgresql and autocommit:
            driver_connection.autocommit = True
        yield pooled, dialect, settings
    finally:
        try:
            if postgresql and not driver_connection.closed:
                if driver_connection.info.transaction_status != SERVER_IDLE:
                    with driver_connection.cursor() as cursor:
                        cursor.execute("ROLLBACK")
                driver_connection.autocommit = False
        except psycopg2.Error as error:
            pooled.invalidate(error)
        pooled.close()


@contextmanager
def reading(statement_timeout_ms: int | None = None) -> Iterator[Reads]:
    """A pooled connection for a request's reads, returned as soon as they are done. On
    PostgreSQL its statements are cancelled after `statement_timeout_ms` (default
    `DB_STATEMENT_TIMEOUT_MS`)."""
    with _pooled_connection(autocommit=True) as (pooled, dialect, settings):
        prefix = settings.timeout_prefix
        if statement_timeout_ms is not None and prefix:
            prefix = timeout_prefix(statement_timeout_ms)
        yield Reads(pooled, dialect, prefix)


@contextmanager
def writing() -> Iterator[Transaction]:
    """A transaction that commits when the block ends and rolls back if it raises. Whatever
    happens, the connection goes back to the pool with no transaction open."""
    with _pooled_connection(autocommit=True) as (pooled, dialect, settings):
        transaction = Transaction(pooled, dialect, settings.timeout_prefix)
        if not transaction.batching:
            with translated_errors(dialect, pooled):
                pooled.dbapi_connection.execute("BEGIN IMMEDIATE")
        try:
            yield transaction
            transaction.commit()
        except BaseException:
            if not transaction.batching:
                pooled.dbapi_connection.rollback()
            raise
