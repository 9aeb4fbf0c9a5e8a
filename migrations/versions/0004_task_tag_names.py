"""Each task keeps the names of its tags (`tasks.tag_names`), so reads need no join.

Reading a page of 50 tasks joined task_tags and tags once per task; on the benchmark's
1M-task set that was about 40 % of the page's database time (pgbench, the same statement
with and without the join: list 2.9-3.4 ms -> 1.8 ms, filtered 4.9-7.9 ms -> 3.5 ms).
task_tags stays the record of which task has which tag (tag filters and tag usage read
it); `tag_names` is a copy, written by every write in the same transaction as the links.

The existing tasks get their names here, sorted as the API shows them: by the tag's
case-folded key, then by name, in code-point order (`COLLATE "C"`, which is also how
Python compares strings). It is one UPDATE of every tagged task, in the migration's
transaction: on the benchmark's 1M-task set (750,000 tagged) it took 118 s on the 2-core
development machine, during which writes to those tasks wait. Run it when traffic is low.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POSTGRESQL_BACKFILL = """
UPDATE tasks SET tag_names = linked.names
FROM (
    SELECT task_tags.task_id,
           json_agg(tags.name ORDER BY tags.name_key COLLATE "C", tags.name COLLATE "C") AS names
    FROM task_tags JOIN tags ON tags.id = task_tags.tag_id
    GROUP BY task_tags.task_id
) AS linked
WHERE linked.task_id = tasks.id
"""
SQLITE_BACKFILL = """
UPDATE tasks SET tag_names = (
    SELECT json_group_array(name) FROM (
        SELECT tags.name AS name FROM task_tags JOIN tags ON tags.id = task_tags.tag_id
        WHERE task_tags.task_id = tasks.id
        ORDER BY tags.name_key, tags.name
    )
)
WHERE id IN (SELECT task_id FROM task_tags)
"""


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("tag_names", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    on_postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(POSTGRESQL_BACKFILL if on_postgresql else SQLITE_BACKFILL)


def downgrade() -> None:
    op.drop_column("tasks", "tag_names")
