"""Forgetting deletions older than SYNC_TOMBSTONE_DAYS: the tombstones go, and each user's
`tombstones_purged_through` records the newest one gone, so a cursor older than that is
answered 410 rather than silently missing a deletion."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.sql.dml import Delete, Update

from todo.data.models import TaskTombstone, User, UTCDateTime, utc_now


def tombstone_cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or utc_now()) - timedelta(days=days)


def _purge_statements(one_user: bool) -> tuple[Update, Delete]:
    expired: Any = TaskTombstone.deleted_at < bindparam("cutoff", type_=UTCDateTime())
    newest_expired = (
        select(func.max(TaskTombstone.change_number))
        .where(TaskTombstone.user_id == User.id, expired)
        .scalar_subquery()
    )
    mark = update(User).values(
        tombstones_purged_through=func.coalesce(newest_expired, User.tombstones_purged_through)
    )
    forget = delete(TaskTombstone).where(expired)
    if one_user:
        mark = mark.where(User.id == bindparam("user_id"))
        forget = forget.where(TaskTombstone.user_id == bindparam("user_id"))
    return mark, forget


# Every user's (the `flask purge` command), and one user's (after that user deletes a task,
# while their row is locked anyway): mark first, then delete, in one transaction.
PURGE_ALL = _purge_statements(one_user=False)
PURGE_USER = _purge_statements(one_user=True)


def purge_tombstones(days: int, now: datetime | None = None) -> int:
    """Every user's tombstones older than `days` (`flask purge`); how many were deleted."""
    from todo.data.database import writing

    mark, forget = PURGE_ALL
    parameters = {"cutoff": tombstone_cutoff(days, now)}
    with writing() as tx:
        tx.execute(mark, parameters)
        return tx.execute(forget, parameters)
