"""Reading tags: the user's tags in use, with how many tasks use each."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Integer, Select, bindparam, select

from todo.data.change_numbers import USER_CHANGE_NUMBER, user_version
from todo.data.database import Reads
from todo.data.models import Tag, tag_key
from todo.data.sql import escape_like


class TagUsage(TypedDict):
    name: str
    usage_count: int


def _usage_statement(with_prefix: bool, limited: bool = True) -> Select[str, int, int]:
    # Each tag carries its count (`tags.usage_count`, kept by a trigger), so this reads the
    # user's tags alone, never their links.
    statement = (
        # Each row carries the user's change number too, read in the same snapshot: the
        # answer's validator.
        select(Tag.name, Tag.usage_count, USER_CHANGE_NUMBER)
        .where(Tag.user_id == bindparam("user_id"))
        .order_by(Tag.usage_count.desc(), Tag.name_key, Tag.name)
    )
    if limited:
        statement = statement.limit(bindparam("limit", type_=Integer))
    if with_prefix:
        statement = statement.where(Tag.name_key.like(bindparam("pattern"), escape="\\"))
    return statement


# Built once: SQLAlchemy then reuses their compiled form.
USAGE = _usage_statement(with_prefix=False)
USAGE_WITH_PREFIX = _usage_statement(with_prefix=True)
ALL_USAGE = _usage_statement(with_prefix=False, limited=False)


def tag_usage(reads: Reads, user_id: str, prefix: str | None, limit: int
              ) -> tuple[list[TagUsage], int]:
    """Tags used by at least one of the user's tasks, most used first, then by name; and the
    user's change number they reflect."""
    parameters: dict[str, Any] = {"user_id": user_id, "limit": limit}
    statement = USAGE
    if prefix:
        statement = USAGE_WITH_PREFIX
        parameters["pattern"] = f"{escape_like(tag_key(prefix))}%"
    rows = reads.all(statement, parameters)
    change_number = rows[0][2] if rows else user_version(reads, user_id).change_number
    return _usages(rows), change_number


def all_tag_usage(reads: Reads, user_id: str) -> list[TagUsage]:
    """Every tag of the user (at most `MAX_TAGS_PER_USER`, 500 by default), in the order of
    `tag_usage`."""
    return _usages(reads.all(ALL_USAGE, {"user_id": user_id}))


def _usages(rows: list[tuple[Any, ...]]) -> list[TagUsage]:
    return [{"name": name, "usage_count": int(count)} for name, count, _ in rows]
