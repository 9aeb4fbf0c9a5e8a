"""Tables: users, tasks, tags, the task_tags link and the kept responses of idempotent
retries. Typed, with no serialisation logic.

Every rule that protects the data also lives in the database (lengths, priority values,
per-user tag uniqueness, cascades), so a bug above this layer cannot store a bad row.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from todo.extensions import Base

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
TAG_NAME_MAX = 50
USER_ID_MAX = 255
IDEMPOTENCY_KEY_MAX = 255


class Priority(enum.StrEnum):
    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on PostgreSQL and SQLite alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite keeps the text as given; store it without an offset so it sorts as text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def tag_key(name: str) -> str:
    """The case-insensitive identity of a tag name, computed the same way for every backend."""
    return name.casefold()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"length(id) BETWEEN 1 AND {USER_ID_MAX}", name="id_length"),
        CheckConstraint("task_count >= 0", name="task_count_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(USER_ID_MAX), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The user's tasks, counted by the triggers on `tasks` (migrations 0005, 0006): the
    # per-user task limit reads one row instead of counting the user's tasks.
    task_count: Mapped[int] = mapped_column(server_default=text("0"))
    # The number of the user's latest change: every insert, update and delete of one of the
    # user's tasks takes the next one, in the writing transaction (triggers, migration 0006).
    # The changes feed's cursors and the list's validators are made of it.
    change_number: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Tombstones numbered up to this one may have been purged (SYNC_TOMBSTONE_DAYS): a
    # changes cursor older than it could miss deletions (410).
    tombstones_purged_through: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


task_tags = Table(
    "task_tags",
    Base.metadata,
    Column("task_id", Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Uuid, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_task_tags_tag_id", "tag_id"),
)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(f"length(title) BETWEEN 1 AND {TITLE_MAX}", name="title_length"),
        CheckConstraint(f"length(description) <= {DESCRIPTION_MAX}", name="description_length"),
        CheckConstraint(
            "priority IN ({})".format(", ".join(f"'{p.value}'" for p in Priority)),
            name="priority_value",
        ),
        # The default listing order (created_at desc, then id) read straight off the index.
        Index("ix_tasks_user_id_created_at", "user_id", text("created_at DESC"), "id"),
        Index("ix_tasks_user_id_updated_at", "user_id", "updated_at"),
        Index("ix_tasks_user_id_change_number", "user_id", "change_number"),
        Index("ix_tasks_user_id_due_date", "user_id", "due_date"),
        Index("ix_tasks_user_id_priority_due_date", "user_id", "priority", "due_date"),
        Index("ix_tasks_user_id_title_lower", "user_id", text("lower(title)")),
        # `search` is a substring match; trigram indexes keep it fast as a user's tasks grow.
        *(
            Index(
                f"ix_tasks_user_id_{column}_trgm",
                "user_id",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
            ).ddl_if(dialect="postgresql")
            for column in ("title", "description")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(
        String(USER_ID_MAX), ForeignKey("users.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX))
    completed: Mapped[bool] = mapped_column(default=False, server_default=false())
    priority: Mapped[str] = mapped_column(
        String(6), default=Priority.MEDIUM.value, server_default=text("'Medium'")
    )
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The names of the task's tags, in the order the API shows them: a copy of what
    # task_tags links, written in the same transaction as the links by every write
    # (todo/tasks/writes.py), so reading a task or a page of tasks needs no join. The join
    # was about 40 % of a page's database time.
    tag_names: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # The user's change number of the task's latest write (set by a trigger, migration 0006).
    change_number: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class TaskTombstone(Base):
    """A deleted task, for the changes feed: written by a trigger on `tasks` (migration 0006),
    kept SYNC_TOMBSTONE_DAYS."""

    __tablename__ = "task_tombstones"

    user_id: Mapped[str] = mapped_column(
        String(USER_ID_MAX), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    change_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Tag(Base):
    """A tag exists while some task uses it: the trigger that counts its links (migration
    0005) deletes it with its last one."""

    __tablename__ = "tags"
    __table_args__ = (
        CheckConstraint(f"length(name) BETWEEN 1 AND {TAG_NAME_MAX}", name="name_length"),
        CheckConstraint("usage_count >= 0", name="usage_count_not_negative"),
        UniqueConstraint("user_id", "name_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(
        String(USER_ID_MAX), ForeignKey("users.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(TAG_NAME_MAX))
    # casefold() can lengthen a name (ß -> ss), hence the wider column.
    name_key: Mapped[str] = mapped_column(String(TAG_NAME_MAX * 3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    # The tasks that use it, counted by a trigger on `task_tags` (migration 0005).
    usage_count: Mapped[int] = mapped_column(server_default=text("0"))



class IdempotencyState(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"


class IdempotencyKey(Base):
    """One `Idempotency-Key` of one user (API.md, Idempotent retries): the request that
    claimed it (method, target, SHA-256 of the body) and, once that request succeeded, the
    response it got, replayed to retries (todo/pipeline/idempotency.py).

    No foreign key to `users`: a key is claimed before the request's view runs, and the
    users row is created by the user's first write, inside that view. Erasing a user deletes
    their keys explicitly (`idempotency.ERASE_USER_KEYS`)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint(f"length(key) BETWEEN 1 AND {IDEMPOTENCY_KEY_MAX}", name="key_length"),
        CheckConstraint(
            "state IN ({})".format(", ".join(f"'{s.value}'" for s in IdempotencyState)),
            name="state_value",
        ),
        # A claim in flight keeps nothing yet; a finished one keeps a whole response.
        CheckConstraint(
            "(state = 'in_flight' AND status IS NULL AND headers IS NULL AND body IS NULL)"
            " OR (state = 'done' AND status IS NOT NULL AND headers IS NOT NULL"
            " AND body IS NOT NULL)",
            name="response_when_done",
        ),
        # Expired keys of one user, oldest first: what a claim purges on the way.
        Index("ix_idempotency_keys_user_id_created_at", "user_id", "created_at"),
    )

    user_id: Mapped[str] = mapped_column(String(USER_ID_MAX), primary_key=True)
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX), primary_key=True)
    # The request's fingerprint: the same key with another of these is a 422.
    method: Mapped[str] = mapped_column(String(7))
    target: Mapped[str] = mapped_column(Text)  # path, and `?query` when there is one
    body_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    state: Mapped[str] = mapped_column(String(9))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    # The kept headers (`Content-Type`, `ETag`, `Location`: those the response had).
    headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # When the key was claimed: the claim's identity (its holder stores or releases only
    # the row it claimed), the start of its time to live, and of an abandoned claim's wait.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
