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

Driver errors surface as SQLAlchemy's exception classes (`translated`), so the error
handlers see one family whatever the path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from flask import Flask, current_app
from sqlalchemy import Dialect, Executable, event
from sqlalchemy import exc as sa_exc

from todo.data import connection_check
from todo.data.sql import DriverStatement, driver_statement
from todo.extensions import db
from todo.pipeline import metrics

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
    # The pool gauges (connections in use, threads waiting) when metrics are on.
    pool_metrics: metrics.Instruments | None = None


def timeout_prefix(milliseconds: int) -> str:
    return f"SET LOCAL statement_timeout = {int(milliseconds)}; "


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    timeout_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    postgresql = engine.dialect.name == "postgresql"
    app.extensions["todo.data.database"] = Settings(
        timeout_prefix=timeout_prefix(timeout_ms) if postgresql else "",
        pool_metrics=metrics.instruments_if_enabled(app.config),
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


def translated(dialect: Dialect, pooled: Any, error: Any, sql: str | None = None,
               parameters: Any = None) -> sa_exc.StatementError:
    """A driver error as SQLAlchemy's (so the handlers in `todo.errors` see one family); a
    connection the error shows is broken is taken out of the pool."""
    broken = pooled is not None and dialect.is_disconnect(error, pooled.dbapi_connection, None)
    if broken:
        pooled.invalidate(error)
    exception: sa_exc.StatementError = sa_exc.DBAPIError.instance(
        sql, parameters, error, dialect.loaded_dbapi.Error,
        connection_invalidated=broken, dialect=dialect,
    )
    return exception


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
        return [compiled.row(row) for row in self._run(compiled, parameters, FETCH_ALL)]

    def first(self, statement: Executable, parameters: Mapping[str, Any] | None = None
              ) -> tuple[Any, ...] | None:
        compiled = driver_statement(statement, self.dialect)
        row = self._run(compiled, parameters, FETCH_ONE)
        return compiled.row(row) if row is not None else None

    def scalar(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Any:
        row = self.first(statement, parameters)
        return row[0] if row is not None else None

    def _text(self, compiled: DriverStatement) -> str:
        """The query string that runs `compiled`."""
        return self.timeout_prefix + compiled.sql

    def _run(self, compiled: DriverStatement, parameters: Mapping[str, Any] | None,
             fetch: Callable[[Any], Any]) -> Any:
        """Send `compiled`; `fetch(cursor)` is the result (what it fetched, or a count)."""
        sql = self._text(compiled)
        values = compiled.parameters(parameters or {})
        cursor = self.pooled.cursor()
        try:
            cursor.execute(sql, values)
            return fetch(cursor)
        except self.dialect.loaded_dbapi.Error as error:
            raise translated(self.dialect, self.pooled, error, sql, values) from error
        finally:
            cursor.close()


def FETCH_ALL(cursor: Any) -> Any:  # noqa: N802  (constants for `Reads._run`)
    return cursor.fetchall()


def FETCH_ONE(cursor: Any) -> Any:  # noqa: N802
    return cursor.fetchone()


def ROW_COUNT(cursor: Any) -> Any:  # noqa: N802
    return cursor.rowcount


class Transaction(Reads):
    """One transaction; `writing()` commits it when its block ends.

    `defer` runs a statement whose result nothing needs: on PostgreSQL it travels in the
    query string of the next statement (or of `COMMIT`), and its errors surface there; on
    SQLite it runs at once.

    A transaction holds one operation (a request's create, edit, toggle or delete) or, with
    `many_operations`, several in a row (a batch): `finish` ends an operation, and only a
    transaction of one operation commits with it."""

    def __init__(self, pooled: Any, dialect: Dialect, timeout_prefix: str, *,
                 many_operations: bool = False) -> None:
        super().__init__(pooled, dialect, timeout_prefix)
        self.batching = dialect.name == "postgresql"
        self.many_operations = many_operations
        # What goes in front of the next statement: at first `BEGIN` and the timeout.
        self.pending: list[str] = ["BEGIN", timeout_prefix.rstrip("; ")] if self.batching else []
        self.started = False  # whether anything has gone to the server
        self.finished = False

    def execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> int:
        """Run a statement now; the number of rows it changed."""
        return int(self._run(driver_statement(statement, self.dialect), parameters, ROW_COUNT))

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
        """Run the operation's last statement and return its first row. A transaction of
        one operation commits with it; one of `many_operations` goes on to the next, and
        commits when the `writing()` block ends.

        On PostgreSQL, when nothing has been sent yet, the deferred statements and this one
        go as one query string without `BEGIN`: PostgreSQL runs it as one implicit
        transaction and commits it at its end, so such a write is one round trip."""
        if self.many_operations:
            return self.first(statement, parameters)
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
        if not self.started and len(self.pending) == 2:  # nothing to run: BEGIN and timeout
            self.pending = []
            return
        sql = "; ".join([*self.pending, "COMMIT"])
        self.pending = []
        try:
            if self.batching:
                with self.pooled.cursor() as cursor:
                    cursor.execute(sql)
            else:
                self.pooled.dbapi_connection.commit()
        except self.dialect.loaded_dbapi.Error as error:
            raise translated(self.dialect, self.pooled, error, sql) from error


class _Checkout:
    """A connection from the pool for one `with` block; on PostgreSQL in autocommit
    (psycopg2's attribute: nothing goes to the server), and given back as the pool expects
    its connections: no transaction open, autocommit off. (A class rather than a generator:
    this is on every request's path.) With metrics on, it is counted as waiting while the
    pool hands it over and as in use until it is given back: four writes to the worker's
    metrics file, 3.6-5.9 µs of CPU per checkout (measured 10,000 times, machine shared)."""

    def __init__(self) -> None:
        engine = db.engine
        self.dialect = engine.dialect
        self.postgresql = self.dialect.name == "postgresql"
        self.settings: Settings = current_app.extensions["todo.data.database"]
        gauges = self.settings.pool_metrics
        if gauges is not None:
            gauges.pool_waiting.inc()
        try:
            self.pooled = engine.raw_connection()
        except self.dialect.loaded_dbapi.Error as error:
            raise translated(self.dialect, None, error) from error
        finally:
            if gauges is not None:
                gauges.pool_waiting.dec()
        if gauges is not None:
            gauges.pool_in_use.inc()
        driver_connection: Any = self.pooled.dbapi_connection
        self.driver_connection = driver_connection
        if self.postgresql:
            driver_connection.autocommit = True

    def give_back(self) -> None:
        driver_connection = self.driver_connection
        try:
            if self.postgresql and not driver_connection.closed:
                if driver_connection.info.transaction_status != SERVER_IDLE:
                    with driver_connection.cursor() as cursor:
                        cursor.execute("ROLLBACK")
                driver_connection.autocommit = False
        except psycopg2.Error as error:
            self.pooled.invalidate(error)
        try:
            self.pooled.close()
        finally:
            if self.settings.pool_metrics is not None:
                self.settings.pool_metrics.pool_in_use.dec()


class reading(_Checkout):  # noqa: N801  (used as a function: `with reading() as reads`)
    """A pooled connection for a request's reads, returned as soon as they are done. On
    PostgreSQL its statements are cancelled after `statement_timeout_ms` (default
    `DB_STATEMENT_TIMEOUT_MS`)."""

    def __init__(self, statement_timeout_ms: int | None = None) -> None:
        super().__init__()
        prefix = self.settings.timeout_prefix
        if statement_timeout_ms is not None and prefix:
            prefix = timeout_prefix(statement_timeout_ms)
        self.reads = Reads(self.pooled, self.dialect, prefix)

    def __enter__(self) -> Reads:
        return self.reads

    def __exit__(self, *exc_info: object) -> None:
        self.give_back()


class writing(_Checkout):  # noqa: N801  (used as a function: `with writing() as tx`)
    """A transaction that commits when the block ends and rolls back if it raises. Whatever
    happens, the connection goes back to the pool with no transaction open.
    `many_operations`: the block runs several operations (a batch; see `Transaction`)."""

    def __init__(self, *, many_operations: bool = False) -> None:
        super().__init__()
        self.transaction = Transaction(self.pooled, self.dialect, self.settings.timeout_prefix,
                                       many_operations=many_operations)

    def __enter__(self) -> Transaction:
        if not self.transaction.batching:
            try:
                self.driver_connection.execute("BEGIN IMMEDIATE")
            except self.dialect.loaded_dbapi.Error as error:
                self.give_back()
                raise translated(self.dialect, self.pooled, error) from error
        return self.transaction

    def __exit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if error_type is None:
                self.transaction.commit()
            elif not self.transaction.batching:
                self.driver_connection.rollback()
        finally:
            self.give_back()
