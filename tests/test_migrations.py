"""Migrations build the schema from empty, agree with the models, and reverse cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.conftest import (
    RUN_ID,
    create_pg_database,
    drop_pg_database,
    make_config,
    require_postgres,
    worker_id,
)
from todo import create_app
from todo.extensions import db
from todo.tasks.representation import sort_tag_names


def schema_differences(app) -> list:
    with app.app_context():
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
        db.engine.dispose()
    return differences


@pytest.fixture
def empty_postgres_app():
    require_postgres()
    name = f"todo_test_migrations_{RUN_ID}_{worker_id()}"
    app = create_app(make_config(create_pg_database(name)))
    yield app
    with app.app_context():
        db.engine.dispose()
    drop_pg_database(name)


@pytest.fixture
def empty_sqlite_app(tmp_path: Path):
    return create_app(make_config(f"sqlite:///{tmp_path / 'm.db'}"))


def table_names(app) -> set[str]:
    with app.app_context():
        names = set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
    return names


@pytest.mark.parametrize("which", ["empty_postgres_app", "empty_sqlite_app"])
def test_upgrade_from_empty_builds_every_table(request, which):
    app = request.getfixturevalue(which)
    with app.app_context():
        flask_migrate.upgrade()
    assert table_names(app) >= {"users", "tasks", "tags", "task_tags", "alembic_version"}


def test_models_and_migrations_agree_on_postgres(empty_postgres_app):
    with empty_postgres_app.app_context():
        flask_migrate.upgrade()
    assert schema_differences(empty_postgres_app) == []


@pytest.mark.parametrize("which", ["empty_postgres_app", "empty_sqlite_app"])
def test_downgrade_to_base_and_back(request, which):
    app = request.getfixturevalue(which)
    with app.app_context():
        flask_migrate.upgrade()
        flask_migrate.downgrade(revision="base")
    assert table_names(app) <= {"alembic_version"}
    with app.app_context():
        flask_migrate.upgrade()
    assert "tasks" in table_names(app)


def test_database_constraints_hold_without_the_api(empty_postgres_app):
    """The rules live in the database too: a bad row is refused even by raw SQL."""
    with empty_postgres_app.app_context():
        flask_migrate.upgrade()
        engine = db.engine
    bad_rows = [
        "INSERT INTO tasks (id, user_id, title, priority, created_at, updated_at) VALUES "
        "(gen_random_uuid(), 'u', '', 'Medium', now(), now())",
        "INSERT INTO tasks (id, user_id, title, priority, created_at, updated_at) VALUES "
        "(gen_random_uuid(), 'u', 'x', 'Urgent', now(), now())",
        "INSERT INTO tags (id, user_id, name, name_key, created_at) VALUES "
        "(gen_random_uuid(), 'u', 'work', 'work', now())",
    ]
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (id, created_at) VALUES ('u', now())"))
        connection.execute(sa.text(
            "INSERT INTO tags (id, user_id, name, name_key, created_at) VALUES "
            "(gen_random_uuid(), 'u', 'Work', 'work', now())"
        ))
    for statement in bad_rows:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.text(statement))
    engine.dispose()


@pytest.mark.parametrize("which", ["empty_postgres_app", "empty_sqlite_app"])
def test_0004_gives_existing_tasks_their_tag_names_in_the_apis_order(request, which):
    app = request.getfixturevalue(which)
    with app.app_context():
        flask_migrate.upgrade(revision="0003")
        engine = db.engine
    # Keys as the service computes them (casefold); the API orders by key, then by name.
    tags = {"b": "b", "Apple": "apple", "apple2": "apple2", "Zed": "zed", "Äpfel": "äpfel"}
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (id, created_at) VALUES ('u', '2026-01-01')"))
        for number, title in enumerate(["tagged", "untagged"], start=1):
            connection.execute(sa.text(
                "INSERT INTO tasks (id, user_id, title, completed, priority, created_at, updated_at)"
                " VALUES (:id, 'u', :title, false, 'Medium', '2026-01-01', '2026-01-01')"
            ), {"id": f"00000000-0000-4000-8000-00000000000{number}", "title": title})
        for number, (name, key) in enumerate(tags.items(), start=1):
            tag_id = f"00000000-0000-4000-9000-00000000000{number}"
            connection.execute(sa.text(
                "INSERT INTO tags (id, user_id, name, name_key, created_at)"
                " VALUES (:id, 'u', :name, :key, '2026-01-01')"
            ), {"id": tag_id, "name": name, "key": key})
            connection.execute(sa.text(
                "INSERT INTO task_tags (task_id, tag_id) VALUES (:task, :tag)"
            ), {"task": "00000000-0000-4000-8000-000000000001", "tag": tag_id})
    engine.dispose()
    with app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            stored = dict(connection.execute(sa.text("SELECT title, tag_names FROM tasks")).all())
        db.engine.dispose()
    names = {title: value if isinstance(value, list) else json.loads(value)
             for title, value in stored.items()}
    assert names == {"tagged": sort_tag_names(list(tags)), "untagged": []}
    assert names["tagged"] == ["Apple", "apple2", "b", "Zed", "Äpfel"]


@pytest.mark.parametrize("which", ["empty_postgres_app", "empty_sqlite_app"])
def test_0005_counts_each_users_tasks_and_triggers_keep_counting(request, which):
    app = request.getfixturevalue(which)
    with app.app_context():
        flask_migrate.upgrade(revision="0004")
        engine = db.engine
    insert_task = sa.text(
        "INSERT INTO tasks (id, user_id, title, completed, priority, created_at, updated_at)"
        " VALUES (:id, :user, 't', false, 'Medium', '2026-01-01', '2026-01-01')"
    )
    with engine.begin() as connection:
        for user in ("three", "none"):
            connection.execute(sa.text(
                "INSERT INTO users (id, created_at) VALUES (:user, '2026-01-01')"), {"user": user})
        for number in range(3):
            connection.execute(insert_task, {"id": f"00000000-0000-4000-8000-00000000000{number}",
                                             "user": "three"})
    engine.dispose()
    count = sa.text("SELECT id, task_count FROM users ORDER BY id")
    with app.app_context():
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            assert connection.execute(count).all() == [("none", 0), ("three", 3)]
            connection.execute(insert_task, {"id": "00000000-0000-4000-8000-000000000009",
                                             "user": "none"})
            connection.execute(sa.text("DELETE FROM tasks WHERE user_id = 'three'"))
            assert connection.execute(count).all() == [("none", 1), ("three", 0)]
        db.engine.dispose()
