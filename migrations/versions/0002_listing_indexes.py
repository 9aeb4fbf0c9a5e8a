"""Indexes for the listing: per-user sort orders, and trigram search on PostgreSQL.

`search` is a case-insensitive substring match (ILIKE '%...%'), which a b-tree cannot
serve; pg_trgm's GIN operator class can, and btree_gin lets the same index also narrow to
the user. SQLite goes without those two.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_user_id_updated_at", "tasks", ["user_id", "updated_at"])
    op.create_index("ix_tasks_user_id_due_date", "tasks", ["user_id", "due_date"])
    op.create_index("ix_tasks_user_id_title_lower", "tasks", ["user_id", sa.text("lower(title)")])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    for column in ("title", "description"):
        op.create_index(
            f"ix_tasks_user_id_{column}_trgm",
            "tasks",
            ["user_id", column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_tasks_user_id_description_trgm", table_name="tasks")
        op.drop_index("ix_tasks_user_id_title_trgm", table_name="tasks")
    op.drop_index("ix_tasks_user_id_title_lower", table_name="tasks")
    op.drop_index("ix_tasks_user_id_due_date", table_name="tasks")
    op.drop_index("ix_tasks_user_id_updated_at", table_name="tasks")
