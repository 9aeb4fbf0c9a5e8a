"""Fixtures: an app on a fresh database per test, on SQLite and on PostgreSQL.

Every test that takes `app` (or `client`) runs three times: on SQLite, on PostgreSQL, and on
PostgreSQL through PgBouncer in transaction mode (Neon's pooled endpoint). The schema is built
with the real migrations (`flask db upgrade`) once per backend and worker; each test then
starts from empty tables (a copied SQLite file, or truncated PostgreSQL tables).

PostgreSQL comes from `TEST_DATABASE_URL`, else `postgresql://postgres@127.0.0.1:5432/test`.
If it does not answer, PostgreSQL tests are skipped with the reason, except under `CI=true`,
where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import jwt
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from werkzeug.serving import make_server

from config import load_config
from deploy import pgbouncer
from todo import create_app
from todo.extensions import db

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = ("task_tags", "tags", "tasks", "task_tombstones", "users", "idempotency_keys")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres_only: the test needs PostgreSQL")


# ---------------------------------------------------------------- PostgreSQL server


def _admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


def worker_id() -> str:
    """This pytest-xdist worker's name, to keep per-worker databases and ports apart."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_unavailable_reason() -> str | None:
    url = _admin_url()
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg2://", 1),
        connect_args={"connect_timeout": 3},
        poolclass=sa.pool.NullPool,
    )
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        return f"PostgreSQL is not reachable at {sa.engine.make_url(url)!r}: {str(error.orig).strip()}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    reason = _pg_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(f"{reason}; set TEST_DATABASE_URL to run the PostgreSQL tests")


def create_pg_database(name: str) -> str:
    """(Re)create database `name` on the test server and return its URL."""
    admin = sa.engine.make_url(_admin_url().replace("postgresql://", "postgresql+psycopg2://", 1))
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def make_config(database_url: str, **environ: str) -> dict[str, Any]:
    """Settings as `load_config` builds them from an environment with these variables."""
    return load_config(
        "testing",
        environ={
            "DATABASE_URL": database_url,
            "BETTER_AUTH_SECRET": SECRET,
            "ALLOWED_ORIGINS": "http://localhost:3000",
            "LOG_FORMAT": "json",
            "RATELIMIT_ENABLED": "false",
            **environ,
        },
    )


def migrate(app: Flask) -> None:
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def drop_pg_database(name: str) -> None:
    admin = sa.engine.make_url(_admin_url().replace("postgresql://", "postgresql+psycopg2://", 1))
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# One name per pytest run, so two runs on the same server never share a database.
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This worker's migrated PostgreSQL database (skips or fails when there is no server)."""
    require_postgres()
    name = f"todo_test_{RUN_ID}_{worker_id()}"
    url = create_pg_database(name)
    migrate(create_app(make_config(url)))
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="session")
def pgbouncer_database() -> Iterator[tuple[str, str]]:
    """This worker's migrated database: its direct URL, and its URL through PgBouncer in
    transaction mode (as Neon's `-pooler` URL is). Migrations and test set-up go to the
    server directly, as the README says."""
    require_postgres()
    if not pgbouncer.available():
        reason = "PgBouncer is not installed (Debian package pgbouncer; `make test` installs it)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    name = f"todo_test_{RUN_ID}_{worker_id()}_bouncer"
    direct_url = create_pg_database(name)
    migrate(create_app(make_config(direct_url)))
    bouncer = pgbouncer.PgBouncer(sa.engine.make_url(direct_url))
    yield direct_url, bouncer.url_for(direct_url)
    bouncer.stop()
    drop_pg_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(create_app(make_config(f"sqlite:///{path}")))
    return path


# ---------------------------------------------------------------- the app under test


@pytest.fixture(params=["sqlite", "postgresql", "pgbouncer"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite, PostgreSQL, and PostgreSQL through PgBouncer: every API test runs on each."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend in ("postgresql", "pgbouncer"):
        if backend == "postgresql":
            direct = app_url = request.getfixturevalue("postgres_database")
        else:
            direct, app_url = request.getfixturevalue("pgbouncer_database")
        engine = sa.create_engine(
            direct, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5}
        )
        with engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
        engine.dispose()
        return str(app_url)
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "todo.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def app_config(database_url: str) -> dict[str, Any]:
    """Settings of the app under test; tests may change them before `app` is built."""
    return make_config(database_url)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(app_config)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Run `app` on a real threaded HTTP server on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


# ---------------------------------------------------------------- tokens


def make_token(sub: Any = "user-a", *, key: Any = SECRET, algorithm: str = "HS256",
               headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A token like the frontend's: `sub`, `iat`, `exp` in 10 minutes, plus `claims`
    (a claim set to None is left out)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + 600}
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def bearer(user_id: str = "user-a", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id, **claims)}"}


@pytest.fixture
def auth() -> Callable[..., dict[str, str]]:
    """`auth("user-a")` -> headers with a valid bearer token for that user."""
    return bearer


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 7807 problem with this status; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.path
    return body


def new_task(client: FlaskClient, user_id: str = "user-a", **fields: Any) -> dict[str, Any]:
    """Create a task through the API and return its JSON (asserting the 201)."""
    body = {"title": f"task {uuid.uuid4().hex[:8]}", **fields}
    response = client.post(f"/api/{user_id}/tasks", json=body, headers=bearer(user_id))
    assert response.status_code == 201, response.get_json()
    task: dict[str, Any] = response.get_json()
    return task


@pytest.fixture
def create_task(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    def create(user_id: str = "user-a", **fields: Any) -> dict[str, Any]:
        return new_task(client, user_id, **fields)

    return create


def redis_reachable() -> bool:
    """Redis answers on its default port (the rate-limit and cluster tests need it)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1]
