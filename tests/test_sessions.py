"""Connections go back to the pool on every path, errors included, under concurrency.

A FastAPI implementation of this API stalled at 32 concurrent connections because sessions
were left "idle in transaction". Here a small pool (2 connections, no overflow) serves 200
concurrent requests of every kind, and afterwards PostgreSQL shows no connection of ours
left in a transaction.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, make_config, serve
from todo import create_app
from todo.extensions import db

APPLICATION_NAME = f"todo-session-test-{uuid.uuid4().hex[:8]}"


def call(base: str, method: str, path: str, body: object = None, user: str = "user-a") -> int:
    data = None if body is None else json.dumps(body).encode()
    headers = {**bearer(user), "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def small_pool_app(postgres_database):
    app = create_app(
        make_config(
            postgres_database,
            DB_POOL_SIZE="2",
            DB_MAX_OVERFLOW="0",
            DB_POOL_TIMEOUT="20",
            DB_APPLICATION_NAME=APPLICATION_NAME,
        )
    )
    yield app
    with app.app_context():
        db.engine.dispose()


def our_connections(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT state, query FROM pg_stat_activity WHERE application_name = :name"),
            {"name": APPLICATION_NAME},
        ).all()
    engine.dispose()
    return [(row.state, row.query) for row in rows]


def test_sessions_are_returned_on_every_path(small_pool_app, postgres_database):
    missing = "/api/user-a/tasks/00000000-0000-4000-8000-000000000000"
    requests = [
        ("POST", "/api/user-a/tasks", {"title": "ok"}, "user-a", 201),
        ("GET", "/api/user-a/tasks", None, "user-a", 200),
        ("GET", "/api/user-a/tasks?limit=0", None, "user-a", 400),
        ("GET", missing, None, "user-a", 404),
        ("PATCH", missing, {"title": "x"}, "user-a", 404),
        ("DELETE", missing, None, "user-a", 404),
        ("POST", "/api/user-a/tasks", {"title": ""}, "user-a", 400),
        ("GET", "/api/user-b/tasks", None, "user-a", 403),
        ("GET", "/api/user-a/tags", None, "user-a", 200),
        ("GET", "/health/ready", None, "user-a", 200),
    ]
    with serve(small_pool_app) as base, ThreadPoolExecutor(max_workers=64) as pool:
        futures = [
            (pool.submit(call, base, method, path, body, user), expected)
            for method, path, body, user, expected in requests * 20
        ]
        statuses = [(future.result(), expected) for future, expected in futures]
        assert all(status == expected for status, expected in statuses), statuses
        connections = our_connections(postgres_database)
    assert len(connections) <= 2
    assert all(state == "idle" for state, _ in connections), connections
