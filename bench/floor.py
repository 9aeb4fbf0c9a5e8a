"""The floor: the least a Python WSGI process must do to answer `list` and `get` as the
service does, to measure what the framework costs on top.

A bare WSGI callable (no Flask, no ORM): PyJWT verifies the bearer token, psycopg2 runs
*the SQL the service sends for the request* (recorded on the wire by `bench.sqlcapture`, the
same capture the pgbench scripts come from, with the user id and task id turned into
psycopg2 parameters), orjson writes the body. The bodies are byte-identical to the
service's: `get` builds the task as `todo.tasks.representation.task_json` does (and its
ETag as `task_etag` does), `list` wraps the JSON text PostgreSQL renders as
`todo.tasks.listing._envelope` does (and its ETag, from the user's change number the
statement reads, as `todo.api.conditional.collection_etag` does). Status codes and
Content-Type are the service's for what the floor serves: 200, and problem+json 401 (no or
bad token), 403 (another user's path), 404 (no such task, or not a UUID); also 405 for other
methods, 400 for a listing with a query string (the floor has no filters) and 503 when
PostgreSQL fails.

It runs under the same `gunicorn -c gunicorn.conf.py` as the service
(`bench.floor:create_app()`), so it moves only when gunicorn, psycopg2 or PostgreSQL move;
the service's req/s as a fraction of the floor's is what the framework leaves of it.

Environment: `DATABASE_URL`, `BETTER_AUTH_SECRET` (HS256), `BENCH_FLOOR_SQL` (the JSON file
`write_sql_file` writes), `BENCH_FLOOR_POOL_SIZE` (else `GUNICORN_THREADS`, else 8, the
default of gunicorn.conf.py), `JWT_LEEWAY_SECONDS` (default 30, as the service's).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import orjson
import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

SQL_ENV = "BENCH_FLOOR_SQL"
POOL_SIZE_ENV = "BENCH_FLOOR_POOL_SIZE"
DEFAULT_POOL_SIZE = 8  # gunicorn.conf.py's default thread count
USER_ID_MAX = 255  # todo.data.models.USER_ID_MAX: the longest `sub` the service accepts
TOKEN_CACHE_SIZE = 4096  # as the service's TokenVerifier
PATH = re.compile(r"^/api/(?P<user_id>[^/]+)/tasks(?:/(?P<task_id>[^/]+))?$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)
PROBLEM = "application/problem+json"
JSON = "application/json"
# The digest of an empty query string in a collection's ETag (todo.api.conditional).
EMPTY_QUERY_DIGEST = hashlib.sha256(b"").hexdigest()[:16]
TASK_KEYS = ("id", "user_id", "title", "description", "completed", "priority", "due_date",
             "tags", "created_at", "updated_at")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Response = tuple[int, str, bytes, list[tuple[str, str]]]


# ------------------------------------------------------------ the SQL, from the capture


def parameterized(statements: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Recorded query strings in psycopg2's form: `%` doubled, and each quoted literal of
    `values` (name -> the value recorded) replaced by `%(name)s`, which psycopg2 quotes back
    into the same text for that value. Every literal must occur, or the capture went wrong."""
    result = [statement.replace("%", "%%") for statement in statements]
    for name, value in values.items():
        literal = "'" + value.replace("'", "''") + "'"
        if not any(literal in statement for statement in result):
            raise RuntimeError(f"{literal} does not occur in the recorded SQL: {statements!r}")
        result = [statement.replace(literal, f"%({name})s") for statement in result]
    return result


def write_sql_file(
    path: Path, recorded: Mapping[str, Sequence[str]], user_id: str, task_id: str
) -> None:
    """The floor's SQL file: the query strings one `list` (of `user_id`) and one `get` (of
    its task `task_id`) sent, parameterized."""
    sql = {
        "list": parameterized(recorded["list"], {"user_id": user_id}),
        "get": parameterized(recorded["get"], {"user_id": user_id, "task_id": task_id}),
    }
    path.write_text(json.dumps(sql, indent=2) + "\n")


# ------------------------------------------------------------ the response bodies


def format_timestamp(value: datetime) -> str:
    """As `todo.tasks.representation.format_timestamp`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_body(row: Mapping[str, Any]) -> tuple[bytes, str]:
    """A task row (by column name) as the service's JSON body, and its ETag."""
    due_date = row["due_date"]
    task = {
        "id": str(row["id"]),
        "user_id": row["user_id"],
        "title": row["title"],
        "description": row["description"],
        "completed": row["completed"],
        "priority": row["priority"],
        "due_date": due_date.isoformat() if due_date is not None else None,
        "tags": row["tag_names"],
        "created_at": format_timestamp(row["created_at"]),
        "updated_at": format_timestamp(row["updated_at"]),
    }
    digest = hashlib.sha256(orjson.dumps(task, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return orjson.dumps(task), f'"{digest[:32]}"'


def list_body(data: str, total: int, limit: int = 50, offset: int = 0) -> bytes:
    """The listing envelope around the page PostgreSQL rendered, as the service's."""
    tail = orjson.dumps({"total": total, "limit": limit, "offset": offset})
    return b'{"data":' + data.encode() + b"," + tail[1:]


def list_etag(change_number: int | None) -> str:
    """The default listing's validator, as `todo.api.conditional.collection_etag` makes it:
    the user's change number (read by the listing statement; 0 for a user who never wrote)
    and the digest of the query string, which the floor's listing never has."""
    return f'"tasks.{change_number or 0}.{EMPTY_QUERY_DIGEST}"'


def problem(status: int, detail: str, path: str, headers: Iterable[tuple[str, str]] = ()
            ) -> Response:
    body = orjson.dumps({"type": "about:blank", "title": HTTPStatus(status).phrase,
                         "status": status, "detail": detail, "instance": path})
    return status, PROBLEM, body, list(headers)


# ------------------------------------------------------------ the WSGI app


class Floor:
    """The WSGI callable. Connections come from a psycopg2 pool of `pool_size`, opened in the
    worker on the first request, autocommit like the service's reads."""

    def __init__(self, database_url: str, secret: str, sql: Mapping[str, Sequence[str]],
                 pool_size: int, leeway_seconds: int = 30) -> None:
        self.database_url = database_url.replace("postgresql+psycopg2://", "postgresql://", 1)
        self.secret = secret
        self.list_sql = list(sql["list"])
        self.get_sql = list(sql["get"])
        self.pool_size = pool_size
        self.leeway_seconds = leeway_seconds
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        # psycopg2's pool raises when empty; this makes a request wait for a connection
        # instead (a worker with more concurrent requests than threads, e.g. async).
        self._slots = threading.BoundedSemaphore(pool_size)
        # Fast path, as the service's TokenVerifier: a verified token's (exp, sub) until exp.
        self._tokens: dict[str, tuple[float, str]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        status, content_type, body, headers = self.respond(environ)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
        )
        return [body]

    def respond(self, environ: Mapping[str, Any]) -> Response:
        # WSGI gives the path as latin-1 text of the raw bytes; werkzeug decodes it as UTF-8.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        if path == "/health":
            return 200, JSON, b'{"status":"ok"}', []
        match = PATH.match(path)
        if match is None:
            return problem(404, "Not found.", path)
        if environ.get("REQUEST_METHOD") != "GET":
            return problem(405, "The floor serves GET only.", path, [("Allow", "GET")])
        subject = self.caller(environ.get("HTTP_AUTHORIZATION", ""))
        if isinstance(subject, tuple):
            return problem(401, subject[0], path, [("WWW-Authenticate", subject[1])])
        user_id, task_id = match["user_id"], match["task_id"]
        if subject != user_id:
            return problem(403, "This token may only be used for its own user's data.", path)
        try:
            if task_id is None:
                if environ.get("QUERY_STRING"):
                    return problem(400, "The floor serves the default listing only.", path)
                page = self.first_row(self.list_sql, {"user_id": user_id})
                assert page is not None  # an aggregate: always one row
                return (200, JSON, list_body(page["data"], int(page["total"])),
                        [("ETag", list_etag(page.get("change_number")))])
            if not UUID_TEXT.match(task_id):
                return problem(404, "Task not found.", path)
            row = self.first_row(self.get_sql, {"user_id": user_id,
                                                "task_id": str(uuid.UUID(task_id))})
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            return problem(503, "The database is unavailable; try again shortly.", path,
                           [("Retry-After", "1")])
        if row is None:
            return problem(404, "Task not found.", path)
        body, etag = task_body(row)
        return 200, JSON, body, [("ETag", etag)]

    def caller(self, authorization: str) -> str | tuple[str, str]:
        """The token's `sub`, or (why it was refused, the WWW-Authenticate challenge)."""
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            return ("A bearer token is required: send `Authorization: Bearer <jwt>`.", "Bearer")
        cached = self._tokens.get(token)
        if cached is not None and time.time() < cached[0]:
            return cached[1]
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"],
                                leeway=self.leeway_seconds,
                                options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            claims = {}
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= USER_ID_MAX:
            return ("Token is invalid.",
                    'Bearer error="invalid_token", error_description="Token is invalid."')
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[token] = (float(claims["exp"]), subject)
        return subject

    def first_row(self, statements: Sequence[str], parameters: Mapping[str, str]
                  ) -> dict[str, Any] | None:
        """Send each query string in turn on one pooled connection: the last one's first
        row, by column name, or None."""
        with self._slots:
            pool = self._pool or self._open_pool()
            connection = pool.getconn()
            try:
                if not connection.autocommit:  # a connection the pool just opened
                    connection.autocommit = True
                    # json columns (tag_names): psycopg2 parses them; orjson is faster.
                    psycopg2.extras.register_default_json(connection, loads=orjson.loads)
                with connection.cursor() as cursor:
                    for statement in statements:
                        cursor.execute(statement, parameters)
                    row = cursor.fetchone()
                    if row is None:
                        return None
                    columns = cursor.description or ()
                    return {column.name: value
                            for column, value in zip(columns, row, strict=True)}
            finally:
                pool.putconn(connection, close=bool(connection.closed))

    def close(self) -> None:
        """Close the pool's connections (tests; gunicorn just ends the worker)."""
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None

    def _open_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                # minconn = maxconn: psycopg2's pool closes a returned connection whenever
                # more than minconn are open, so a smaller minconn reconnects all the time.
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    self.pool_size, self.pool_size, self.database_url,
                    connect_timeout=3, application_name="todo-bench-floor",
                )
            return self._pool


def _pool_size(environ: Mapping[str, str]) -> int:
    return int(environ.get(POOL_SIZE_ENV) or environ.get("GUNICORN_THREADS")
               or DEFAULT_POOL_SIZE)


def create_app(environ: Mapping[str, str] | None = None) -> Floor:
    """The floor from the environment (`gunicorn ... 'bench.floor:create_app()'`)."""
    env = os.environ if environ is None else environ
    return Floor(
        database_url=env["DATABASE_URL"],
        secret=env["BETTER_AUTH_SECRET"],
        sql=json.loads(Path(env[SQL_ENV]).read_text()),
        pool_size=_pool_size(env),
        leeway_seconds=int(env.get("JWT_LEEWAY_SECONDS", "30")),
    )
