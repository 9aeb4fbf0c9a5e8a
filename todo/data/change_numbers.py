"""Reading a user's change number (`users.change_number`, kept by triggers, migration 0006):
the version of everything the user has. Validators of collections and the changes feed's
cursors are made of it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from todo.data.database import Reads
from todo.data.models import User

USER_VERSION = select(User.change_number, User.tombstones_purged_through).where(
    User.id == bindparam("user_id")
)
# The same as a scalar subquery, for a statement that should read its data and the version
# in one snapshot (PostgreSQL runs each statement on one).
USER_CHANGE_NUMBER = (
    select(User.change_number).where(User.id == bindparam("user_id")).scalar_subquery()
)


@dataclass(frozen=True)
class UserVersion:
    change_number: int  # the latest change; 0 for a user who never wrote
    tombstones_purged_through: int  # deletions up to this number may be forgotten


def user_version(reads: Reads, user_id: str) -> UserVersion:
    row = reads.first(USER_VERSION, {"user_id": user_id})
    return UserVersion(*row) if row is not None else UserVersion(0, 0)
