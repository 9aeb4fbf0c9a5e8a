"""Erasing a user and everything of theirs (API.md, "The user's own data").

Deleting the user's row takes everything that refers to it with it (foreign keys ON DELETE
CASCADE): tasks, their tag links, tags and tombstones. The tasks' deletion trigger finds no
user row left, so it numbers nothing and leaves no tombstone. Kept idempotent responses have
no foreign key (a key is claimed before the user's row exists), so they go first, in the
same transaction."""

from __future__ import annotations

from sqlalchemy import bindparam, delete

from todo.data.database import writing
from todo.data.models import User
from todo.pipeline.idempotency import ERASE_USER_KEYS

ERASE_USER = delete(User).where(User.id == bindparam("user_id"))


def erase_user(user_id: str) -> None:
    with writing() as tx:
        tx.execute(ERASE_USER_KEYS, {"user_id": user_id})
        tx.execute(ERASE_USER, {"user_id": user_id})
