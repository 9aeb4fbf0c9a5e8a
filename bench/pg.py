"""The PostgreSQL server the bench uses: URLs, admin connections, databases, free slots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """`BENCH_DATABASE_URL`: a libpq URL whose database is used only for administration
    (CREATE / DROP DATABASE); each data set gets its own database on that server."""
    url = os.environ.get("BENCH_DATABASE_URL", "").strip() or DEFAULT_SERVER_URL
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme))


def database_url(server: str, database: str) -> str:
    """The same server and credentials, another database (query parameters kept)."""
    return urlunsplit(urlsplit(server)._replace(path="/" + database))


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, autocommit: bool = True) -> psycopg2.extensions.connection:
    connection = psycopg2.connect(url, connect_timeout=5, application_name="todo-bench")
    connection.autocommit = autocommit
    return connection


def unavailable_reason(server: str) -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        connect(server).close()
    except psycopg2.OperationalError as error:
        return f"PostgreSQL is not reachable at {redacted(server)}: {str(error).strip()}"
    return None


@contextmanager
def admin_cursor(server: str) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor on an autocommit connection to the server's admin database, closed after."""
    connection = connect(server)
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def database_exists(server: str, name: str) -> bool:
    with admin_cursor(server) as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


def recreate_database(server: str, name: str) -> None:
    drop_database(server, name)
    with admin_cursor(server) as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server: str, name: str) -> None:
    with admin_cursor(server) as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def free_connection_slots(server: str) -> int:
    """Connections a superuser could still open: max_connections minus those in use."""
    with admin_cursor(server) as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def busy_sessions(database_url: str) -> int:
    """Sessions of the URL's database (other than this one) running a statement or inside a
    transaction."""
    connection = connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND state IS DISTINCT FROM 'idle'"
            )
            row = cursor.fetchone()
    finally:
        connection.close()
    return int(row[0]) if row else 0


def server_version(server: str) -> str:
    with admin_cursor(server) as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    return str(row[0]) if row else "?"
