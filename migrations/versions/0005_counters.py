"""Counts kept by the database: each user's tasks (`users.task_count`) and each tag's tasks
(`tags.usage_count`); a tag no task uses any more is deleted with its last link.

- A create checked the per-user task limit with `count(*)` over the user's tasks: an index
  scan whose cost grows with the user's tasks, and more while recently written rows are not
  yet marked all-visible. In pgbench the create's statements ran at 1,000-1,300
  transactions/s with that count and 2,050-2,200 without it.
- `GET /tags` counted each tag's links. After some churn the planner read every link of
  every user (a sequential scan: 6.6 ms instead of well under 1 ms on the benchmark's small
  set), and even per tag the count visits the links' rows until vacuum has run.
- Every write that could leave a tag unused ran `DELETE FROM tags WHERE NOT EXISTS (links)`
  over the user's tags; the link trigger now deletes exactly the tag whose count reaches 0.

Row triggers keep the counts on every path that adds or removes rows (the API, the CLI, a
cascade from a deleted task or user), in the writing transaction. Existing rows get their
counts here, and tags no task uses are deleted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BACKFILL = [
    "UPDATE users SET task_count = (SELECT count(*) FROM tasks WHERE tasks.user_id = users.id)",
    "UPDATE tags SET usage_count = (SELECT count(*) FROM task_tags WHERE tag_id = tags.id)",
    "DELETE FROM tags WHERE usage_count = 0",
]
POSTGRESQL_TRIGGERS = [
    """
    CREATE FUNCTION count_user_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE users SET task_count = task_count + 1 WHERE id = NEW.user_id;
        ELSE
            UPDATE users SET task_count = task_count - 1 WHERE id = OLD.user_id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER count_user_tasks AFTER INSERT OR DELETE ON tasks
        FOR EACH ROW EXECUTE FUNCTION count_user_tasks()
    """,
    """
    CREATE FUNCTION count_tag_links() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id;
        ELSE
            DELETE FROM tags WHERE id = OLD.tag_id AND usage_count = 1;
            UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER count_tag_links AFTER INSERT OR DELETE ON task_tags
        FOR EACH ROW EXECUTE FUNCTION count_tag_links()
    """,
]
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER count_user_tasks_on_insert AFTER INSERT ON tasks BEGIN
        UPDATE users SET task_count = task_count + 1 WHERE id = NEW.user_id;
    END
    """,
    """
    CREATE TRIGGER count_user_tasks_on_delete AFTER DELETE ON tasks BEGIN
        UPDATE users SET task_count = task_count - 1 WHERE id = OLD.user_id;
    END
    """,
    """
    CREATE TRIGGER count_tag_links_on_insert AFTER INSERT ON task_tags BEGIN
        UPDATE tags SET usage_count = usage_count + 1 WHERE id = NEW.tag_id;
    END
    """,
    """
    CREATE TRIGGER count_tag_links_on_delete AFTER DELETE ON task_tags BEGIN
        DELETE FROM tags WHERE id = OLD.tag_id AND usage_count = 1;
        UPDATE tags SET usage_count = usage_count - 1 WHERE id = OLD.tag_id;
    END
    """,
]
TRIGGER_NAMES = {
    "postgresql": [("count_user_tasks", "tasks"), ("count_tag_links", "task_tags")],
    "sqlite": [(name, "") for name in (
        "count_user_tasks_on_insert", "count_user_tasks_on_delete",
        "count_tag_links_on_insert", "count_tag_links_on_delete",
    )],
}


def count_triggers(dialect: str) -> list[str]:
    """The statements that create the count of each user's tasks (migration 0006 replaces
    it, and creates it again when downgraded)."""
    if dialect == "postgresql":
        return POSTGRESQL_TRIGGERS[:2]
    return SQLITE_TRIGGERS[:2]


def upgrade() -> None:
    for table, column, constraint in (
        ("users", "task_count", "task_count_not_negative"),
        ("tags", "usage_count", "usage_count_not_negative"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(column, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
            batch.create_check_constraint(constraint, f"{column} >= 0")
    for statement in BACKFILL:
        op.execute(statement)
    on_postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger in POSTGRESQL_TRIGGERS if on_postgresql else SQLITE_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table in TRIGGER_NAMES[dialect]:
        op.execute(f"DROP TRIGGER {name} ON {table}" if table else f"DROP TRIGGER {name}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION count_user_tasks()")
        op.execute("DROP FUNCTION count_tag_links()")
    for table, column, constraint in (
        ("users", "task_count", "task_count_not_negative"),
        ("tags", "usage_count", "usage_count_not_negative"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(constraint, type_="check")
            batch.drop_column(column)
