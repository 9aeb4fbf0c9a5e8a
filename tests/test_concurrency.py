"""Many requests at once for the same user: nothing fails, nothing is duplicated.

Runs against a real threaded server on PostgreSQL (SQLite serialises writers, so these races
cannot happen there).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, make_config, serve
from todo import create_app
from todo.extensions import db

PARALLEL = 50


def call(base: str, method: str, path: str, user: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={**bearer(user), "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


@pytest.fixture
def live(postgres_database, database_url):
    del database_url  # truncates the tables first
    app = create_app(make_config(postgres_database, DB_POOL_SIZE="10", DB_MAX_OVERFLOW="20"))
    with serve(app) as base:
        yield base, postgres_database
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def backend() -> str:
    return "postgresql"


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        value = connection.execute(sa.text(sql), params).scalar()
    engine.dispose()
    return value


def in_parallel(function: Any, count: int = PARALLEL) -> list[Any]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda i: function(i), range(count)))


def test_first_requests_of_a_new_user_all_succeed(live):
    base, url = live
    user = f"new-{uuid.uuid4().hex}"
    results = in_parallel(
        lambda i: call(base, "POST", f"/api/{user}/tasks", user, {"title": f"t{i}"})
    )
    assert [status for status, _, _ in results] == [201] * PARALLEL
    assert scalar(url, "SELECT count(*) FROM users WHERE id = :u", u=user) == 1
    assert scalar(url, "SELECT count(*) FROM tasks WHERE user_id = :u", u=user) == PARALLEL


def test_parallel_creates_with_the_same_new_tag_leave_one_tag(live):
    base, url = live
    user = f"tagger-{uuid.uuid4().hex}"
    results = in_parallel(
        lambda i: call(base, "POST", f"/api/{user}/tasks", user,
                       {"title": f"t{i}", "tags": ["Fresh" if i % 2 else "fresh", "common"]})
    )
    assert [status for status, _, _ in results] == [201] * PARALLEL
    assert scalar(url, "SELECT count(*) FROM tags WHERE user_id = :u", u=user) == 2
    spellings = {tuple(body["tags"]) for _, body, _ in results}
    assert len(spellings) == 1, "every task shows the first spelling"
    status, tags, _ = call(base, "GET", f"/api/{user}/tags", user)
    assert status == 200
    assert sorted(tag["usage_count"] for tag in tags) == [PARALLEL, PARALLEL]


def test_concurrent_patches_with_the_same_if_match_exactly_one_wins(live):
    base, url = live
    user = f"editor-{uuid.uuid4().hex}"
    status, task, headers = call(base, "POST", f"/api/{user}/tasks", user, {"title": "start"})
    assert status == 201
    etag = headers["ETag"]
    path = f"/api/{user}/tasks/{task['id']}"
    results = in_parallel(
        lambda i: call(base, "PATCH", path, user, {"title": f"writer {i}"}, {"If-Match": etag})
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] + [412] * (PARALLEL - 1)
    winner = next(body for status, body, _ in results if status == 200)
    status, current, _ = call(base, "GET", path, user)
    assert current["title"] == winner["title"]
