"""The bench's floor (bench/floor.py) answers `list` and `get` byte for byte as the service
does, from the SQL recorded from the service, and refuses what the service refuses.

The SQL tests need nothing; the comparison needs PostgreSQL (skipped without it, except under
CI=true, where that is a failure). Nothing heavy is started: the service through Flask's test
client, the floor through werkzeug's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client, TestResponse

from bench.floor import Floor, create_app, list_body, parameterized, write_sql_file
from bench.sqlcapture import request_statements
from config import load_config
from tests.conftest import SECRET, TABLES, bearer, make_token, require_postgres
from todo import create_app as create_service
from todo.extensions import db

# ---------------------------------------------------------------- SQL and bodies, no database


def test_parameterized_turns_the_recorded_literals_into_psycopg2_parameters() -> None:
    recorded = [
        "SET LOCAL statement_timeout = 5000; SELECT to_char(x, 'FM90%') FROM tasks "
        "WHERE tasks.id = '1-2'::uuid::UUID AND tasks.user_id = 'o''neil' OR u = 'o''neil'"
    ]
    assert parameterized(recorded, {"user_id": "o'neil", "task_id": "1-2"}) == [
        "SET LOCAL statement_timeout = 5000; SELECT to_char(x, 'FM90%%') FROM tasks "
        "WHERE tasks.id = %(task_id)s::uuid::UUID AND tasks.user_id = %(user_id)s"
        " OR u = %(user_id)s"
    ]


def test_parameterized_refuses_a_literal_that_was_not_recorded() -> None:
    with pytest.raises(RuntimeError, match="does not occur"):
        parameterized(["SELECT 1 WHERE user_id = 'user-10'"], {"user_id": "user-1"})


def test_list_body_is_the_services_envelope() -> None:
    assert list_body('[{"id": "x"}]', 7) == b'{"data":[{"id": "x"}],"total":7,"limit":50,"offset":0}'


# ---------------------------------------------------------------- against the service


def _environ(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "BETTER_AUTH_SECRET": SECRET,
            "RATELIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING"}


def _connect(database_url: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://", 1))


def _truncate(database_url: str) -> None:
    connection = _connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    finally:
        connection.close()


@pytest.fixture
def service(postgres_database: str) -> Iterator[Flask]:
    require_postgres()
    _truncate(postgres_database)
    app = create_service(load_config("production", environ=_environ(postgres_database)))
    yield app
    with app.app_context():
        db.engine.dispose()
    _truncate(postgres_database)


def _seed(client: FlaskClient) -> tuple[list[str], str]:
    """user-a's task ids (newest last) and a task of user-b."""
    bodies: list[dict[str, Any]] = [
        {"title": "Buy milk", "priority": "High", "due_date": "2026-12-01",
         "tags": ["home", "Errands"], "description": 'Two "fresh" litres, 2% — ünïcode ✓'},
        {"title": "Call dentist", "description": None},
        {"title": "Pay taxes", "priority": "Low", "tags": ["money"]},
    ]
    ids = []
    for body in bodies:
        response = client.post("/api/user-a/tasks", json=body, headers=bearer("user-a"))
        assert response.status_code == 201, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    response = client.patch(f"/api/user-a/tasks/{ids[1]}/complete", headers=bearer("user-a"))
    assert response.status_code == 200
    other = client.post("/api/user-b/tasks", json={"title": "Not yours"},
                        headers=bearer("user-b"))
    assert other.status_code == 201
    return ids, other.get_json()["id"]


@pytest.fixture
def floor(service: Flask, postgres_database: str, tmp_path: Path
          ) -> Iterator[tuple[Floor, dict[str, list[str]], list[str], str]]:
    ids, other = _seed(service.test_client())
    headers = bearer("user-a")
    environ = _environ(postgres_database)
    recorded = {
        "list": request_statements(environ, "/api/user-a/tasks", headers),
        "get": request_statements(environ, f"/api/user-a/tasks/{ids[0]}", headers),
    }
    sql_path = tmp_path / "floor.json"
    write_sql_file(sql_path, recorded, "user-a", ids[0])
    app = create_app({**environ, "BENCH_FLOOR_SQL": str(sql_path),
                      "BENCH_FLOOR_POOL_SIZE": "2"})
    yield app, recorded, ids, other
    app.close()


def _same(service: TestResponse, floor: TestResponse) -> None:
    assert floor.status_code == service.status_code, floor.get_data(as_text=True)
    assert floor.headers["Content-Type"] == service.headers["Content-Type"]
    assert floor.get_data() == service.get_data()


def test_floor_answers_list_and_get_byte_for_byte_as_the_service(
    service: Flask, floor: tuple[Floor, dict[str, list[str]], list[str], str]
) -> None:
    app, _, ids, _ = floor
    client, bare = service.test_client(), Client(app)
    headers = bearer("user-a")
    for path in ["/api/user-a/tasks", *(f"/api/user-a/tasks/{id}" for id in ids)]:
        expected, got = client.get(path, headers=headers), bare.get(path, headers=headers)
        assert expected.status_code == 200
        _same(expected, got)
        assert got.headers.get("ETag") == expected.headers.get("ETag")
    # Another user's listing is empty, and an id in upper case is the same task.
    assert bare.get("/api/user-a/tasks/" + ids[2].upper(), headers=headers).get_data() == (
        client.get(f"/api/user-a/tasks/{ids[2]}", headers=headers).get_data()
    )
    empty = bearer("user-c")
    _same(client.get("/api/user-c/tasks", headers=empty),
          bare.get("/api/user-c/tasks", headers=empty))


def test_floor_refuses_as_the_service(
    service: Flask, floor: tuple[Floor, dict[str, list[str]], list[str], str]
) -> None:
    app, _, ids, other = floor
    client, bare = service.test_client(), Client(app)
    expired = {"Authorization": f"Bearer {make_token('user-a', exp=1)}"}
    wrong_key = {"Authorization": f"Bearer {make_token('user-a', key='x' * 40)}"}
    no_sub = {"Authorization": f"Bearer {make_token(None)}"}
    cases = [
        (f"/api/user-a/tasks/{ids[0]}", {}, 401),
        ("/api/user-a/tasks", {"Authorization": "Basic dXNlcjpwdw=="}, 401),
        ("/api/user-a/tasks", expired, 401),
        ("/api/user-a/tasks", wrong_key, 401),
        ("/api/user-a/tasks", no_sub, 401),
        ("/api/user-b/tasks", bearer("user-a"), 403),
        (f"/api/user-b/tasks/{other}", bearer("user-a"), 403),
        (f"/api/user-a/tasks/{other}", bearer("user-a"), 404),
        ("/api/user-a/tasks/not-a-uuid", bearer("user-a"), 404),
    ]
    for path, headers, status in cases:
        expected, got = client.get(path, headers=headers), bare.get(path, headers=headers)
        assert (path, expected.status_code) == (path, status)
        assert (path, got.status_code) == (path, status), got.get_data(as_text=True)
        assert got.headers["Content-Type"] == expected.headers["Content-Type"]
        if status == 401:
            assert got.headers["WWW-Authenticate"].startswith("Bearer")
    assert bare.get("/health").status_code == 200


def test_floor_sends_the_recorded_sql(
    postgres_database: str, floor: tuple[Floor, dict[str, list[str]], list[str], str]
) -> None:
    """psycopg2 turns the parameters back into exactly the text the service sent."""
    app, recorded, ids, _ = floor
    connection = _connect(postgres_database)
    try:
        with connection.cursor() as cursor:
            values = {"user_id": "user-a", "task_id": ids[0]}
            assert [cursor.mogrify(sql, values).decode() for sql in app.get_sql] == recorded["get"]
            assert [cursor.mogrify(sql, values).decode() for sql in app.list_sql] == (
                recorded["list"]
            )
    finally:
        connection.close()
