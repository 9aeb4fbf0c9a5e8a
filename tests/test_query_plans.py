"""How the listing reaches the database: a constant number of statements whatever the page
size (no query per task for its tags), and on PostgreSQL plans that use the indexes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    RUN_ID,
    bearer,
    create_pg_database,
    drop_pg_database,
    make_config,
    new_task,
    worker_id,
)
from tests.test_round_trips import proxied_client
from todo import create_app
from todo.account import export
from todo.data.sql import driver_statement
from todo.extensions import db
from todo.tags.queries import USAGE
from todo.tasks import stats
from todo.tasks.listing import ListShape, TaskListArgs, bound_values, page_statement


@pytest.fixture
def counted(database_url: str) -> Iterator[tuple[FlaskClient, Callable[[Callable[[], Any]], list[str]]]]:
    """A client, and a function returning the statements that reach the database while it
    makes a request: from SQLite's trace callback, or on PostgreSQL (and PgBouncer) from a
    recording proxy on the wire. (The service runs statements on driver cursors, which
    SQLAlchemy's statement events do not see.)"""
    if database_url.startswith("sqlite"):
        app = create_app(make_config(database_url))
        statements: list[str] = []
        with app.app_context():
            sa.event.listen(
                db.engine, "checkout",
                lambda dbapi_connection, *_: dbapi_connection.set_trace_callback(statements.append),
            )

        def during(call: Callable[[], Any]) -> list[str]:
            statements.clear()
            call()
            return list(statements)

        yield app.test_client(), during
        with app.app_context():
            db.engine.dispose()
        return
    with proxied_client(database_url) as (client, recorder):

        def during_on_the_wire(call: Callable[[], Any]) -> list[str]:
            recorder.clear_queries()
            call()
            return recorder.queries()

        yield client, during_on_the_wire


def test_listing_issues_the_same_statements_for_1_and_100_tasks(counted):
    client, during = counted
    user = "counted"
    for i in range(100):
        response = client.post(f"/api/{user}/tasks", headers=bearer(user),
                               json={"title": f"task {i}", "tags": [f"t{i % 7}", f"u{i % 5}", "all"]})
        assert response.status_code == 201

    def page(limit: int) -> None:
        response = client.get(f"/api/{user}/tasks?limit={limit}", headers=bearer(user))
        assert response.status_code == 200
        body = response.get_json()
        assert len(body["data"]) == limit and body["total"] == 100
        assert all(len(task["tags"]) == 3 for task in body["data"])

    one, hundred = during(lambda: page(1)), during(lambda: page(100))
    assert len(one) == len(hundred)
    # PostgreSQL: `SET LOCAL statement_timeout = ...; SELECT ...` in one round trip (and a
    # `SELECT 1` ping first if the connection sat idle); SQLite: the SELECT.
    queries = [s for s in hundred if "FROM tasks" in s]
    assert len(queries) == 1, hundred


def test_getting_a_task_is_one_select(counted):
    client, during = counted
    task = new_task(client, "counted", title="t", tags=["a", "b"])
    statements = during(
        lambda: client.get(f"/api/counted/tasks/{task['id']}", headers=bearer("counted"))
    )
    assert len([s for s in statements if "FROM tasks" in s]) == 1, statements


def test_stats_is_one_statement(counted):
    client, during = counted
    for i in range(5):
        new_task(client, "counted", title=f"milk {i}", tags=["a", "b"], due_date="2026-01-01")
    for query in ("", "?search=milk&tags=a&tags=b&tag_mode=all&priority=high&due_from=2025-01-01"
                      "&due_to=2027-01-01&today=2026-01-01"):
        def stats_request(query: str = query) -> None:
            response = client.get(f"/api/counted/tasks/stats{query}", headers=bearer("counted"))
            assert response.status_code == 200, response.get_json()
            assert response.get_json()["total"] in (0, 5)

        statements = during(stats_request)
        assert len([s for s in statements if "FROM tasks" in s]) == 1, statements


def test_export_reads_the_tags_then_a_page_per_statement(counted, monkeypatch):
    """The tags and the first page before the response starts, then one read per page: 7
    tasks in pages of 3 are pages of 3, 3 and 1."""
    monkeypatch.setattr(export, "PAGE_SIZE", 3)
    client, during = counted
    for i in range(7):
        new_task(client, "counted", title=f"task {i}", tags=["a"])

    def export_request() -> None:
        response = client.get("/api/counted/export", headers=bearer("counted"))
        assert response.status_code == 200 and len(response.get_json()["tasks"]) == 7

    statements = during(export_request)
    assert len([s for s in statements if "FROM tags" in s]) == 1, statements
    assert len([s for s in statements if "FROM tasks" in s]) == 3, statements


# ---------------------------------------------------------------- PostgreSQL plans

SEED = """
-- Triggers off while loading (as the bench's seed does); the counts they keep are set below.
SET LOCAL session_replication_role = replica;
INSERT INTO users (id, created_at) SELECT 'user-' || u, now() FROM generate_series(1, 100) u;
INSERT INTO tasks (id, user_id, title, description, completed, priority, due_date,
                   created_at, updated_at)
SELECT gen_random_uuid(), 'user-' || (i % 100 + 1),
       (ARRAY['Buy milk','Call mom','Write report','Fix bike','Plan trip','Read book'])[i % 6 + 1]
           || ' ' || md5(i::text),
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'details ' || md5((i * 7)::text) END,
       i % 4 = 0, (ARRAY['High','Medium','Low'])[i % 3 + 1],
       CASE WHEN i % 5 = 0 THEN NULL ELSE date '2026-01-01' + (i % 365) END,
       now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval
FROM generate_series(1, 100000) i;
INSERT INTO users (id, created_at) VALUES ('heavy', now());
INSERT INTO tasks (id, user_id, title, description, completed, priority, due_date,
                   created_at, updated_at)
SELECT gen_random_uuid(), 'heavy', 'Heavy ' || md5(i::text), 'more ' || md5((i * 3)::text),
       false, 'Medium', NULL, now() - (i || ' seconds')::interval, now()
FROM generate_series(1, 10000) i;
INSERT INTO tags (id, user_id, name, name_key, created_at)
SELECT gen_random_uuid(), 'user-' || u, 'tag' || t, 'tag' || t, now()
FROM generate_series(1, 100) u, generate_series(1, 8) t;
INSERT INTO task_tags (task_id, tag_id)
SELECT tasks.id, tags.id FROM tasks JOIN tags ON tags.user_id = tasks.user_id
WHERE tags.name_key IN ('tag' || (abs(hashtext(tasks.id::text)) % 8 + 1), 'tag1');
UPDATE users SET task_count = (SELECT count(*) FROM tasks WHERE tasks.user_id = users.id);
UPDATE tags SET usage_count = (SELECT count(*) FROM task_tags WHERE tag_id = tags.id);
"""


@pytest.fixture(scope="module")
def seeded_app() -> Iterator[Flask]:
    """100 users x 1,000 tasks, and one user at the 10,000-task cap, with statistics."""
    from tests.conftest import require_postgres

    require_postgres()
    name = f"todo_test_plans_{RUN_ID}_{worker_id()}"
    url = create_pg_database(name)
    app = create_app(make_config(url))
    with app.app_context():
        flask_migrate.upgrade()
    seeding = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with seeding.begin() as connection:
        connection.execute(sa.text(SEED))
    # As autovacuum leaves a table: statistics, and a visibility map for index-only scans.
    with seeding.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
    seeding.dispose()
    yield app
    with app.app_context():
        db.engine.dispose()
    drop_pg_database(name)


def plan(app: Flask, args: TaskListArgs, user: str = "user-7") -> str:
    with app.app_context():
        sql = str(page_statement(user, args).compile(db.engine, compile_kwargs={"literal_binds": True}))
        with db.engine.connect() as connection:
            rows = connection.execute(sa.text("EXPLAIN " + sql.replace("%%", "%"))).scalars()
            return "\n".join(rows)


def test_default_listing_reads_the_per_user_order_index(seeded_app):
    text = plan(seeded_app, TaskListArgs())
    assert "Index Scan using ix_tasks_user_id_created_at" in text, text
    assert "Seq Scan on tasks" not in text, text


def test_search_uses_the_trigram_indexes_as_a_users_tasks_grow(seeded_app):
    # With 1,000 tasks, filtering the user's rows is cheaper and PostgreSQL rightly does that;
    # at the 10,000-task cap the trigram indexes take over.
    text = plan(seeded_app, TaskListArgs(search="a1b2c"), user="heavy")
    assert "ix_tasks_user_id_title_trgm" in text, text
    assert "ix_tasks_user_id_description_trgm" in text, text
    assert "Seq Scan on tasks" not in text, text


def test_due_date_sort_uses_a_per_user_index(seeded_app):
    text = plan(seeded_app, TaskListArgs(sort_by="due_date", sort_direction="asc"))
    assert "ix_tasks_user_id" in text and "Seq Scan on tasks" not in text, text


def test_tag_usage_reads_the_users_tags_alone(seeded_app):
    """Each tag carries its usage count (kept by a trigger), so the links are not read."""
    with seeded_app.app_context(), db.engine.connect() as connection:
        sql = USAGE.compile(db.engine).string
        rows = connection.exec_driver_sql("EXPLAIN " + sql, {"user_id": "user-7", "limit": 20})
        text = "\n".join(row[0] for row in rows)
    assert "uq_tags_user_id_name_key" in text and "task_tags" not in text, text


def explain(app: Flask, statement: Any, parameters: dict[str, Any]) -> str:
    """PostgreSQL's plan of one of the service's statements, with these values bound."""
    with app.app_context(), db.engine.connect() as connection:
        compiled = driver_statement(statement, db.engine.dialect)
        rows = connection.exec_driver_sql("EXPLAIN " + compiled.sql,
                                          compiled.parameters(parameters))
        return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("args", [TaskListArgs(), TaskListArgs(priority="High"),
                                  TaskListArgs(search="a1b2c")])
def test_stats_read_only_the_users_tasks(seeded_app, args):
    """At the 10,000-task cap the counts read the user's rows through an index, never the
    whole table."""
    parameters = {**bound_values("heavy", args), "today": date(2026, 6, 1)}
    text = explain(seeded_app, stats._statement(ListShape.of(args)), parameters)
    assert "ix_tasks_user_id" in text and "Seq Scan" not in text, text


def test_an_export_page_is_an_index_range_after_the_last_one(seeded_app):
    """Each page starts where the last ended, in the per-user order index: the 50th page
    costs what the first does."""
    parameters = {"user_id": "heavy", "limit": export.PAGE_SIZE,
                  "after_created_at": datetime(2026, 1, 1, tzinfo=UTC), "after_id": uuid.UUID(int=0)}
    text = explain(seeded_app, export.RENDERED_PAGES[True], parameters)
    assert "Index Scan using ix_tasks_user_id_created_at" in text, text
    assert "created_at <=" in text.split("Index Cond")[1].split("\n")[0], text
    assert "Sort" not in text.split("Aggregate")[1], text  # read in order, not sorted
