"""Idempotent retries: each user's `Idempotency-Key`s, with the response each one got.

A key is claimed (a row in flight) before the request's view runs, and gets the response
once the request succeeded (state done); a failed request deletes its row. Rows are kept
`IDEMPOTENCY_TTL_HOURS`, then purged by `flask purge` and by later claims of the same user
(todo/pipeline/idempotency.py).

No foreign key to `users`: the users row is created by the user's first write, which runs
after the claim. Erasing a user deletes their keys explicitly.

The primary key (user_id, key) is what a claim looks up; (user_id, created_at) finds a
user's expired keys without reading the unexpired ones.

Revision ID: 0007
Revises: 0006 (to be re-chained after 0006 when the changes feed is merged)
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=7), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.String(length=9), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(key) BETWEEN 1 AND 255", name=op.f("ck_idempotency_keys_key_length")
        ),
        sa.CheckConstraint(
            "state IN ('in_flight', 'done')", name=op.f("ck_idempotency_keys_state_value")
        ),
        sa.CheckConstraint(
            "(state = 'in_flight' AND status IS NULL AND headers IS NULL AND body IS NULL)"
            " OR (state = 'done' AND status IS NOT NULL AND headers IS NOT NULL"
            " AND body IS NOT NULL)",
            name=op.f("ck_idempotency_keys_response_when_done"),
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_user_id_created_at",
        "idempotency_keys",
        ["user_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_user_id_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
