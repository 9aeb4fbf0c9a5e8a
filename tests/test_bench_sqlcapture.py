"""The bench's SQL capture records what reaches PostgreSQL, on the wire (bench.sqlcapture,
bench.pgwire), and the pgbench scripts keep each recorded query string in one query.

The parser and script tests need nothing; the proxy tests need PostgreSQL (skipped without
it, except under CI=true, where that is a failure).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import pytest

from bench.pgbench import pgbench_command
from bench.pgwire import (
    GSSENC_REQUEST,
    SSL_REQUEST,
    STARTUP_MESSAGE,
    FrontendParser,
    QueryRecorder,
    RecordingProxy,
)
from bench.sqlcapture import proxied_url, request_statements, upstream_of
from tests.conftest import DEFAULT_PG_URL, SECRET, bearer, require_postgres

PROTOCOL_3_0 = 196608


def startup_packet(code: int, body: bytes = b"") -> bytes:
    payload = code.to_bytes(4, "big") + body
    return (4 + len(payload)).to_bytes(4, "big") + payload


def typed_message(kind: str, payload: bytes) -> bytes:
    return kind.encode() + (4 + len(payload)).to_bytes(4, "big") + payload


def query_message(text: str) -> bytes:
    return typed_message("Q", text.encode() + b"\0")


STARTUP = startup_packet(PROTOCOL_3_0, b"user\0postgres\0database\0test\0\0")


# ---------------------------------------------------------------- parser, no database


def test_parser_reassembles_messages_split_across_reads() -> None:
    stream = STARTUP + query_message("SELECT 1") + query_message("SET LOCAL x = 1; SELECT 2")
    stream += typed_message("X", b"")
    for cut in range(1, len(stream)):
        parser = FrontendParser()
        messages = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [message.kind for message in messages] == [STARTUP_MESSAGE, "Q", "Q", "X"]
        assert [message.query_text() for message in messages[1:3]] == [
            "SELECT 1", "SET LOCAL x = 1; SELECT 2",
        ]
        assert b"".join(message.raw for message in messages) == stream


def test_parser_waits_for_the_rest_of_a_message() -> None:
    parser = FrontendParser()
    query = query_message("SELECT 1")
    assert [message.kind for message in parser.feed(STARTUP + query[:7])] == [STARTUP_MESSAGE]
    assert [message.query_text() for message in parser.feed(query[7:])] == ["SELECT 1"]


def test_parser_knows_the_untyped_startup_phase_packets() -> None:
    stream = startup_packet(GSSENC_REQUEST) + startup_packet(SSL_REQUEST) + STARTUP
    stream += query_message("SELECT 1")
    kinds = [message.kind for message in FrontendParser().feed(stream)]
    assert kinds == ["GSSENCRequest", "SSLRequest", STARTUP_MESSAGE, "Q"]


def test_recorder_keeps_queries_and_flags_the_extended_protocol() -> None:
    recorder = QueryRecorder()
    stream = STARTUP + query_message("SELECT 1") + typed_message("P", b"\0SELECT $1\0\0\0")
    for message in FrontendParser().feed(stream):
        recorder.record(message)
    assert recorder.queries() == ["SELECT 1"]
    assert recorder.problems() == [
        "the client sent a Parse message: the capture only supports the simple query protocol"
    ]


def test_proxied_url_keeps_credentials_and_parameters_and_stays_plain() -> None:
    url = (
        "postgresql://alice:s%40cret@db.example:6543/todo"
        "?application_name=x&sslmode=require&channel_binding=require&host=db.example"
    )
    assert upstream_of(url) == ("db.example", 6543)
    assert proxied_url(url, ("127.0.0.1", 40000)) == (
        "postgresql://alice:s%40cret@127.0.0.1:40000/todo"
        "?application_name=x&gssencmode=disable&sslmode=disable"
    )


def test_upstream_of_a_socket_directory() -> None:
    url = "postgresql://postgres@/todo?host=/var/run/postgresql"
    assert upstream_of(url) == "/var/run/postgresql/.s.PGSQL.5432"


def test_pgbench_command_keeps_a_query_string_in_one_query() -> None:
    query = "SET LOCAL statement_timeout = 5000; SELECT 'a;b' AS \"c;d\", 'it''s;' \nFROM t"
    assert pgbench_command(query + ";\n") == (
        "SET LOCAL statement_timeout = 5000\\; SELECT 'a;b' AS \"c;d\", 'it''s;' \nFROM t;"
    )
    assert pgbench_command("SELECT 1") == "SELECT 1;"


def test_pgbench_command_refuses_what_it_cannot_split_safely() -> None:
    for query in ("SELECT E'\\';'", "SELECT 1 -- ;", "SELECT $$;$$"):
        with pytest.raises(RuntimeError):
            pgbench_command(query)


# ---------------------------------------------------------------- through PostgreSQL


def _server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    require_postgres()
    with RecordingProxy(upstream_of(_server_url()), QueryRecorder()) as running:
        yield running


def _libpq_url(proxy: RecordingProxy, **parameters: str) -> str:
    url = proxied_url(_server_url(), proxy.address)
    for name, value in parameters.items():
        url = url.replace(f"{name}=disable", f"{name}={value}")
    return url


def test_proxy_records_statements_psycopg2_sends_from_c(proxy: RecordingProxy) -> None:
    connection = psycopg2.connect(_libpq_url(proxy))
    try:
        proxy.recorder.clear_queries()
        # SQLAlchemy's isolation_level="AUTOCOMMIT": set on checkout, reset on checkin.
        connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED)
        connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.commit()
    finally:
        connection.close()
    assert proxy.recorder.queries() == [
        "SET default_transaction_isolation TO DEFAULT",
        "BEGIN ISOLATION LEVEL READ COMMITTED",  # psycopg2's implicit BEGIN, as sent
        "SELECT 1",
        "COMMIT",
    ]
    assert proxy.recorder.problems() == []


def test_proxy_answers_no_to_encryption_requests(proxy: RecordingProxy) -> None:
    connection = psycopg2.connect(_libpq_url(proxy, sslmode="prefer", gssencmode="prefer"))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 2")
        assert not connection.info.ssl_in_use
    finally:
        connection.close()
    assert proxy.recorder.queries()[-1] == "SELECT 2"
    with pytest.raises(psycopg2.OperationalError, match="does not support SSL"):
        psycopg2.connect(_libpq_url(proxy, sslmode="require"))


def test_request_statements_records_one_read_and_leaves_nothing_running(
    postgres_database: str,
) -> None:
    threads_before = set(threading.enumerate())
    environ = {
        "DATABASE_URL": postgres_database,
        "BETTER_AUTH_SECRET": SECRET,
        "RATELIMIT_ENABLED": "false",
    }
    statements = request_statements(environ, "/api/user-a/tasks", bearer("user-a"))
    # A connection reused moments after its last request is not pinged.
    assert len(statements) == 1, statements
    assert "FROM tasks" in statements[0] and "'user-a'" in statements[0]
    assert set(threading.enumerate()) <= threads_before
