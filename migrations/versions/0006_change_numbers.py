"""Change numbers for the changes feed: every write of a user's task takes the user's next
number, and a deleted task leaves a tombstone.

- `users.change_number`: the user's latest change. `tasks.change_number`: the number of the
  task's latest write. `task_tombstones`: deleted tasks, numbered the same way.
- Row triggers on `tasks` assign the numbers in the writing transaction, on every path (the
  API, a batch, the CLI, a cascade). The number comes from an UPDATE of the user's row, so
  one user's writes take their numbers one at a time and commit in that order: a reader that
  has seen number N has seen every change up to N (no clock is involved).
- `users.tombstones_purged_through`: tombstones up to this number may have been purged
  (SYNC_TOMBSTONE_DAYS); a cursor older than that is answered 410.
- The count of the user's tasks (migration 0005) moves into the same UPDATE of the user's
  row as the number: one UPDATE per inserted or deleted task instead of two (a batch of 50
  creates updated the row 100 times).

Existing tasks are numbered 1..n per user in the order of their `updated_at`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import importlib.util
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BACKFILL = [
    """
    UPDATE tasks SET change_number = numbered.number
    FROM (
        SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY updated_at, id) AS number
        FROM tasks
    ) AS numbered
    WHERE tasks.id = numbered.id
    """,
    "UPDATE users SET change_number = (SELECT count(*) FROM tasks WHERE tasks.user_id = users.id)",
]
POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION number_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE users SET change_number = change_number + 1, task_count = task_count + 1
                WHERE id = NEW.user_id RETURNING change_number INTO NEW.change_number;
        ELSE
            UPDATE users SET change_number = change_number + 1 WHERE id = NEW.user_id
                RETURNING change_number INTO NEW.change_number;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER number_task_change BEFORE INSERT OR UPDATE ON tasks
        FOR EACH ROW EXECUTE FUNCTION number_task_change()
    """,
    # When the user's row is being deleted (erasure) there is no number to take and no
    # tombstone to keep.
    """
    CREATE FUNCTION record_task_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        number bigint;
    BEGIN
        UPDATE users SET change_number = change_number + 1, task_count = task_count - 1
            WHERE id = OLD.user_id RETURNING change_number INTO number;
        IF FOUND THEN
            INSERT INTO task_tombstones (user_id, change_number, task_id, deleted_at)
                VALUES (OLD.user_id, number, OLD.id, statement_timestamp());
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER record_task_deletion AFTER DELETE ON tasks
        FOR EACH ROW EXECUTE FUNCTION record_task_deletion()
    """,
]
# SQLite's triggers cannot set NEW: an AFTER trigger writes the number into the row. Its
# own UPDATE changes `change_number`, which the WHEN clause tells apart from a write.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"  # as SQLAlchemy stores it
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER number_task_insert AFTER INSERT ON tasks BEGIN
        UPDATE users SET change_number = change_number + 1, task_count = task_count + 1
            WHERE id = NEW.user_id;
        UPDATE tasks SET change_number = (SELECT change_number FROM users WHERE id = NEW.user_id)
            WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER number_task_update AFTER UPDATE ON tasks
        WHEN NEW.change_number = OLD.change_number BEGIN
        UPDATE users SET change_number = change_number + 1 WHERE id = NEW.user_id;
        UPDATE tasks SET change_number = (SELECT change_number FROM users WHERE id = NEW.user_id)
            WHERE id = NEW.id;
    END
    """,
    f"""
    CREATE TRIGGER record_task_deletion AFTER DELETE ON tasks BEGIN
        UPDATE users SET change_number = change_number + 1, task_count = task_count - 1
            WHERE id = OLD.user_id;
        INSERT INTO task_tombstones (user_id, change_number, task_id, deleted_at)
            SELECT id, change_number, OLD.id, {SQLITE_NOW} FROM users WHERE id = OLD.user_id;
    END
    """,
]
# Migration 0005's count of the user's tasks, now done by the triggers above.
OLD_COUNT_TRIGGERS = {
    "postgresql": ["DROP TRIGGER count_user_tasks ON tasks", "DROP FUNCTION count_user_tasks()"],
    "sqlite": [
        "DROP TRIGGER count_user_tasks_on_insert", "DROP TRIGGER count_user_tasks_on_delete",
    ],
}
TRIGGER_NAMES = {
    "postgresql": [("number_task_change", "tasks"), ("record_task_deletion", "tasks")],
    "sqlite": [(name, "") for name in (
        "number_task_insert", "number_task_update", "record_task_deletion",
    )],
}


def _migration_0005() -> Any:
    path = Path(__file__).with_name("0005_counters.py")
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    # Plain ALTERs, not batch mode: on SQLite batch mode copies the table and would lose the
    # counting triggers of migration 0005.
    for table, column in (
        ("users", "change_number"),
        ("users", "tombstones_purged_through"),
        ("tasks", "change_number"),
    ):
        op.add_column(
            table, sa.Column(column, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )
    op.create_index("ix_tasks_user_id_change_number", "tasks", ["user_id", "change_number"])
    op.create_table(
        "task_tombstones",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("change_number", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_task_tombstones_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "change_number", name="pk_task_tombstones"),
    )
    for statement in BACKFILL:
        op.execute(statement)
    dialect = op.get_bind().dialect.name
    for statement in OLD_COUNT_TRIGGERS[dialect]:
        op.execute(statement)
    for trigger in POSTGRESQL_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table in TRIGGER_NAMES[dialect]:
        op.execute(f"DROP TRIGGER {name} ON {table}" if table else f"DROP TRIGGER {name}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION number_task_change()")
        op.execute("DROP FUNCTION record_task_deletion()")
    for statement in _migration_0005().count_triggers(dialect):
        op.execute(statement)
    op.drop_table("task_tombstones")
    op.drop_index("ix_tasks_user_id_change_number", "tasks")
    for table, column in (
        ("tasks", "change_number"),
        ("users", "tombstones_purged_through"),
        ("users", "change_number"),
    ):
        op.drop_column(table, column)
