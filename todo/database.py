"""Engine behaviour per backend, how requests get connections, and which database errors
mean "unavailable, retry".

On PostgreSQL every round trip counts (each costs the service and the server CPU, and a
network hop to Neon), so requests talk to it like this:

- a read (`read_connection`) runs in autocommit: one statement, one implicit transaction;
- a write (`write_transaction`) sends `BEGIN` in the same query string as its first
  statement instead of on its own, and `COMMIT` at the end;
- the first statement of every transaction carries `SET LOCAL statement_timeout` (a read
  may ask for a shorter one, as searches do);
- a statement whose result nothing needs (`send_with_next_statement`, e.g. the per-user
  lock) travels with the statement after it.

A query string holding several statements (`BEGIN; SET LOCAL ...; INSERT ...; SELECT ...`)
is one round trip; PostgreSQL still runs each statement with its own snapshot, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg2.extensions
from flask import Flask
from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.type_api import _BindProcessorType

from todo import connection_check
from todo.extensions import db

BEGIN_PENDING = "todo.begin_pending"
QUEUED_STATEMENTS = "todo.queued_statements"
# Execution option: this connection's statement timeout, instead of DB_STATEMENT_TIMEOUT_MS.
STATEMENT_TIMEOUT_MS = "todo_statement_timeout_ms"
SERVER_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE

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
        _install_statement_prefixes(engine, app.config["DB_STATEMENT_TIMEOUT_MS"])
        connection_check.install(engine, app.config["DB_PING_AFTER_IDLE_SECONDS"])


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # WAL lets readers proceed while a writer commits.
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _install_statement_prefixes(engine: Engine, timeout_ms: int) -> None:
    """Put the pending `BEGIN`, the statement timeout and queued statements in front of the
    statement about to be sent.

    `SET LOCAL` lasts for the transaction only, so it also works through a transaction-mode
    pooler (Neon's `-pooler` endpoint, PgBouncer). It is added whenever the server has no
    transaction open, i.e. whenever the statement starts one: an autocommit read, the first
    statement after psycopg2's own `BEGIN`, or the first one of a `write_transaction`.
    """
    set_timeout = f"SET LOCAL statement_timeout = {int(timeout_ms)}"

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def add_prefixes(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        info = connection.info
        prefixes = ["BEGIN"] if info.pop(BEGIN_PENDING, False) else []
        if cursor.connection.info.transaction_status == SERVER_IDLE:
            options = context.execution_options if context is not None else {}
            own_timeout = options.get(STATEMENT_TIMEOUT_MS)
            prefixes.append(
                set_timeout if own_timeout is None
                else f"SET LOCAL statement_timeout = {int(own_timeout)}"
            )
        for queued_statement, queued_parameters in info.pop(QUEUED_STATEMENTS, ()):
            inlined = cursor.mogrify(queued_statement, queued_parameters).decode()
            # psycopg2 %-formats the whole string when parameters are given.
            prefixes.append(inlined.replace("%", "%%") if parameters is not None else inlined)
        if not prefixes:
            return statement, parameters
        return "; ".join([*prefixes, statement]), parameters


def send_with_next_statement(
    connection: Connection, statement: UpdateBase, parameters: Mapping[str, Any]
) -> None:
    """Run `statement`, whose result is not needed, in the same round trip as the next
    statement on this connection (PostgreSQL; elsewhere it runs now). Its errors surface
    from that next statement."""
    if connection.dialect.name != "postgresql":
        connection.execute(statement, parameters)
        return
    sql, processors = _compiled(statement, connection.dialect)
    values = {}
    for name, value in parameters.items():
        process = processors.get(name)
        values[name] = process(value) if process is not None else value
    connection.info.setdefault(QUEUED_STATEMENTS, []).append((sql, values))


@functools.lru_cache(maxsize=256)
def _compiled(
    statement: UpdateBase, dialect: Dialect
) -> tuple[str, dict[str, _BindProcessorType[Any] | None]]:
    """The statement's SQL with psycopg2 placeholders, and each parameter's type conversion."""
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    processors = {name: bind.type.bind_processor(dialect) for name, bind in compiled.binds.items()}
    return compiled.string, processors


@contextmanager
def read_connection(statement_timeout_ms: int | None = None) -> Iterator[Connection]:
    """A pooled connection for a request that only reads, returned as soon as the reads are
    done; on PostgreSQL its statements are cancelled after `statement_timeout_ms` (default
    `DB_STATEMENT_TIMEOUT_MS`).

    On PostgreSQL it runs in autocommit: each read is one statement and its own transaction,
    a single round trip instead of BEGIN, the query and ROLLBACK. Autocommit is switched with
    psycopg2's `autocommit` attribute, which sends nothing to the server. (SQLAlchemy's
    `isolation_level="AUTOCOMMIT"` option calls psycopg2's `set_isolation_level()`, which
    sends `SET default_transaction_isolation` on checkout and again on checkin: two more
    round trips per read.) SQLite's driver starts no transaction for a SELECT anyway.
    """
    with db.engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            yield connection
            return
        if statement_timeout_ms is not None:
            connection.execution_options(**{STATEMENT_TIMEOUT_MS: statement_timeout_ms})
        with _autocommit(connection):
            yield connection


@contextmanager
def write_transaction() -> Iterator[Connection]:
    """A connection in a transaction that commits when the block ends and rolls back if it
    raises.

    On PostgreSQL the connection is in autocommit and the transaction is explicit: `BEGIN`
    goes out with the first statement and `COMMIT` at the end, so psycopg2 does not spend a
    round trip on `BEGIN` alone. Whatever happens, the connection goes back to the pool
    with no transaction open (or is discarded).
    """
    with db.engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            with connection.begin():
                yield connection
            return
        with _autocommit(connection):
            connection.info[BEGIN_PENDING] = True
            yield connection
            if not connection.info.pop(BEGIN_PENDING, False):
                connection.exec_driver_sql("COMMIT")


@contextmanager
def _autocommit(connection: Connection) -> Iterator[None]:
    """psycopg2 in autocommit for the block, then the connection as the pool expects it."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    dbapi_connection.autocommit = True
    try:
        yield
    finally:
        _return_to_pool_state(connection, dbapi_connection)


def _return_to_pool_state(connection: Connection, dbapi_connection: Any) -> None:
    """No transaction open, nothing queued, autocommit off: how the pool hands connections
    out. A connection that cannot be brought back to that state is discarded."""
    connection.info.pop(BEGIN_PENDING, None)
    connection.info.pop(QUEUED_STATEMENTS, None)
    if dbapi_connection.closed:
        return
    try:
        if dbapi_connection.info.transaction_status != SERVER_IDLE:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        dbapi_connection.autocommit = False
    except psycopg2.Error:
        connection.invalidate()
