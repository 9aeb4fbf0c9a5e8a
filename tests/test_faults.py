"""Database faults: PostgreSQL really stopped and started under the service.

Runs on a throwaway cluster the test creates (tests/pg_cluster.py), never on the shared
server. While the database is down every API call is a prompt 503 problem with
`Retry-After`; when it is back, the service recovers by itself; and under a write load with
the database restarted and a gunicorn worker killed, every acknowledged write is in the
database exactly as answered, and no failed write left half a change.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa

from tests.conftest import bearer, make_config, require_postgres
from tests.gunicorn_server import Gunicorn
from tests.pg_cluster import ThrowawayPostgres
from todo import create_app
from todo.extensions import db

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.postgres_only


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayPostgres]:
    require_postgres()  # same rule as the other PostgreSQL tests: skip locally, fail in CI
    pg = ThrowawayPostgres()
    pg.start()
    migrate_app = create_app(make_config(pg.url))
    with migrate_app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    yield pg
    pg.destroy()


@pytest.fixture
def running(cluster: ThrowawayPostgres) -> Iterator[ThrowawayPostgres]:
    """The cluster, guaranteed up again after the test whatever it did."""
    yield cluster
    try:
        cluster.start()
    except subprocess.CalledProcessError:
        pass  # already running


@pytest.fixture
def fault_app(running: ThrowawayPostgres) -> Iterator[Any]:
    app = create_app(make_config(running.url, DB_CONNECT_TIMEOUT="1", DB_POOL_TIMEOUT="2"))
    yield app
    with app.app_context():
        db.engine.dispose()


def assert_503(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0


API_CALLS = [
    ("GET", "/api/faulty/tasks", None),
    ("POST", "/api/faulty/tasks", {"title": "during outage", "tags": ["x"]}),
    ("GET", "/api/faulty/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", None),
    ("PUT", "/api/faulty/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", {"title": "y"}),
    ("PATCH", "/api/faulty/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b/complete", None),
    ("DELETE", "/api/faulty/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", None),
    ("GET", "/api/faulty/tags", None),
]


def test_outage_is_503_then_recovers_without_restart(fault_app, running):
    client = fault_app.test_client()
    headers = bearer("faulty")
    # Warm the pool, so the outage hits stale pooled connections, not just new ones.
    assert client.post("/api/faulty/tasks", json={"title": "before"}, headers=headers).status_code == 201

    running.stop()
    for method, path, body in API_CALLS:
        started = time.monotonic()
        response = client.open(path, method=method, json=body, headers=headers)
        assert time.monotonic() - started < 2, f"{method} {path} took too long"
        assert_503(response)
    assert client.get("/health").status_code == 200
    assert_503(client.get("/health/ready"))

    running.start()
    back = time.monotonic()
    while True:
        response = client.get("/api/faulty/tasks", headers=headers)
        if response.status_code == 200:
            break
        assert time.monotonic() - back < 5, "no recovery within 5 s of the database coming back"
        time.sleep(0.1)
    assert [task["title"] for task in response.get_json()["data"]] == ["before"]
    assert client.get("/health/ready").status_code == 200
    assert client.post("/api/faulty/tasks", json={"title": "after"}, headers=headers).status_code == 201


def test_slow_statement_is_cancelled_and_answered_503(fault_app, running):
    """Another session holds the user's row lock; the write waits on it until the
    per-transaction statement timeout cancels it, then the worker is free again."""
    app = create_app({**fault_app.config, "DB_STATEMENT_TIMEOUT_MS": 500})
    client = app.test_client()
    headers = bearer("locked")
    created = client.post("/api/locked/tasks", json={"title": "t"}, headers=headers)
    assert created.status_code == 201
    path = f"/api/locked/tasks/{created.get_json()['id']}"

    blocker = sa.create_engine(running.url.replace("postgresql://", "postgresql+psycopg2://"))
    with blocker.connect() as connection:
        transaction = connection.begin()
        connection.execute(sa.text("SELECT id FROM users WHERE id = 'locked' FOR UPDATE"))
        started = time.monotonic()
        response = client.patch(path, json={"title": "blocked"}, headers=headers)
        elapsed = time.monotonic() - started
        transaction.rollback()
    blocker.dispose()
    assert_503(response)
    assert 0.4 < elapsed < 2
    assert client.get(path, headers=headers).get_json()["title"] == "t"
    assert client.patch(path, json={"title": "free"}, headers=headers).status_code == 200
    with app.app_context():
        db.engine.dispose()


# ---------------------------------------------------------------- writes under faults


def request(base: str, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={**bearer(user), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None
    # Connection reset by a killed worker, refused while restarting, or cut between the
    # response's head and body (IncompleteRead): no answer, so the write may or may not be in.
    except (OSError, http.client.HTTPException):
        return 0, None


class Writer(threading.Thread):
    """One user's writes: creates, then updates (title and tags together) and toggles, each
    acknowledged result remembered as the expected state of the task."""

    def __init__(self, base: str, user: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.user, self.stop_event = base, user, stop
        self.expected: dict[str, dict[str, Any]] = {}  # task id -> last acknowledged task
        # Tasks whose last write was answered with an error: it may have been applied whole
        # (e.g. the answer was lost after COMMIT); the next acknowledged write shows the truth.
        self.uncertain: set[str] = set()
        # Tasks with a write that got no answer at all (connection reset, client timeout):
        # the server may still apply it after later writes, so only integrity is checked.
        self.unanswered: set[str] = set()
        self.acknowledged = 0
        self.failed = 0
        self.rng = random.Random(user)

    def run(self) -> None:
        version = 0
        while not self.stop_event.is_set():
            version += 1
            action = self.rng.choice(["create", "update", "toggle"]) if self.expected else "create"
            if action == "create":
                status, body = request(self.base, "POST", f"/api/{self.user}/tasks", self.user,
                                       {"title": f"v{version}", "tags": [f"v{version}", "load"]})
                task_id = body["id"] if status == 201 else None
            else:
                task_id = self.rng.choice(sorted(self.expected))
                path = f"/api/{self.user}/tasks/{task_id}"
                if action == "update":
                    status, body = request(self.base, "PATCH", path, self.user,
                                           {"title": f"v{version}", "tags": [f"v{version}", "load"]})
                else:
                    status, body = request(self.base, "PATCH", path + "/complete", self.user)
            if 200 <= status < 300:
                self.acknowledged += 1
                self.expected[task_id] = body
                self.uncertain.discard(task_id)
            else:
                self.failed += 1
                if task_id is not None:
                    (self.unanswered if status == 0 else self.uncertain).add(task_id)
            time.sleep(0.005)


def test_acknowledged_writes_survive_a_database_restart_and_a_killed_worker(running):
    server = Gunicorn(running.url, DB_CONNECT_TIMEOUT="1")
    stop = threading.Event()
    writers = [Writer(server.base, f"writer-{i}", stop) for i in range(8)]
    try:
        for writer in writers:
            writer.start()
        time.sleep(2)
        running.restart(down_seconds=1)  # fault 1: the database goes away and comes back
        time.sleep(2)
        os.kill(server.worker_pids()[0], signal.SIGKILL)  # fault 2: a worker dies mid-request
        time.sleep(3)
        stop.set()
        for writer in writers:
            writer.join(30)
    finally:
        server.stop()

    acknowledged = sum(writer.acknowledged for writer in writers)
    failed = sum(writer.failed for writer in writers)
    print(f"\nwrites acknowledged: {acknowledged}, failed during faults: {failed}")
    assert acknowledged > 100 and failed > 0

    engine = sa.create_engine(running.url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as connection:
        found = _tasks_as_stored(connection)
        orphans = connection.execute(sa.text(
            "SELECT count(*) FROM tags t WHERE NOT EXISTS "
            "(SELECT 1 FROM task_tags l WHERE l.tag_id = t.id)")).scalar()
    engine.dispose()

    checked = 0
    for writer in writers:
        for task_id, answered in writer.expected.items():
            stored = found.get(task_id)
            assert stored is not None, f"acknowledged task {task_id} is missing"
            if task_id in writer.uncertain or task_id in writer.unanswered:
                continue  # a later write failed; it may or may not have been applied whole
            for field in ("title", "completed", "tags", "updated_at"):
                assert stored[field] == answered[field], (task_id, field, stored, answered)
            checked += 1
    print(f"acknowledged tasks checked field by field: {checked}")
    for task_id, stored in found.items():
        # Title and tags always change together: a mismatch would be half a write.
        assert stored["tags"] == sorted([stored["title"], "load"]), (task_id, stored)
    assert orphans == 0


def _tasks_as_stored(connection: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = connection.execute(sa.text(
        "SELECT t.id::text AS id, t.title, t.completed, "
        "to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS updated_at, "
        "coalesce(array_agg(g.name ORDER BY g.name) FILTER (WHERE g.name IS NOT NULL), '{}') AS tags, "
        "t.tag_names::text AS tag_names "
        "FROM tasks t LEFT JOIN task_tags l ON l.task_id = t.id LEFT JOIN tags g ON g.id = l.tag_id "
        "WHERE t.user_id LIKE 'writer-%' GROUP BY t.id"
    )).all()
    for row in rows:
        # The names stored with the task (what reads show) were written with its links.
        assert sorted(json.loads(row.tag_names)) == sorted(row.tags), row
    return {
        row.id: {"title": row.title, "completed": row.completed, "tags": sorted(row.tags),
                 "updated_at": row.updated_at}
        for row in rows
    }
