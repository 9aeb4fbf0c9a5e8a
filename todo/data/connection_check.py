"""Checking a pooled PostgreSQL connection before a request uses it, without a round trip
when it was in use moments ago.

SQLAlchemy's `pool_pre_ping` sends `SELECT 1` on every checkout: a round trip per request,
and about 15 % of a task read's CPU in the service. Instead, at checkout:

- every connection's socket is polled without waiting. An idle connection has nothing to
  read, so a readable socket means the server has written to it unasked: PostgreSQL sends
  `FATAL` and closes the connection when it shuts down, restarts or terminates a backend,
  and an idle timeout (the server's, PgBouncer's, Neon's) closes it too. Such a connection
  is discarded. This is the check Go's MySQL driver makes before reusing a connection.
- a connection that has sat in the pool for `DB_PING_AFTER_IDLE_SECONDS` or longer is also
  pinged, as `pool_pre_ping` would: a long-idle connection is the likeliest to have been
  dropped somewhere in between without a word. `0` pings on every checkout.

Raising `DisconnectionError` in a checkout listener makes the pool discard the connection
and hand out another (SQLAlchemy's documented custom pre-ping), so a stale connection never
reaches a request.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg2
from sqlalchemy import Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

RETURNED_AT = "todo.returned_to_pool_at"
READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def install(engine: Engine, ping_after_idle_seconds: float) -> None:
    """Check connections at checkout (see the module docstring); `engine` should not also
    use `pool_pre_ping`."""

    @event.listens_for(engine, "checkin")
    def remember_return(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check_before_use(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        returned_at = record.info.pop(RETURNED_AT, None)
        if returned_at is None:
            return  # opened for this checkout
        if dbapi_connection.closed or server_has_spoken(dbapi_connection):
            raise sa_exc.DisconnectionError("the server closed the pooled connection")
        if time.monotonic() - returned_at >= ping_after_idle_seconds:
            ping(engine, dbapi_connection)


def server_has_spoken(dbapi_connection: Any) -> bool:
    """Whether the socket of an idle connection has anything to read (or has failed)."""
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), READABLE)
    return bool(poller.poll(0))


def ping(engine: Engine, dbapi_connection: Any) -> None:
    """`SELECT 1` in autocommit (one round trip), as `pool_pre_ping` does."""
    try:
        engine.dialect.do_ping(dbapi_connection)
    except psycopg2.Error as error:
        raise sa_exc.DisconnectionError("the pooled connection failed its ping") from error
