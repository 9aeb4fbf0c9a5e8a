"""Migrations build the schema from empty, agree with the models, and reverse cleanly."""

from __future__ import annotations

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
