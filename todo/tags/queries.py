"""Reading tags: the user's tags in use, with how many tasks use each."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Connection, func, select

from todo.models import Tag, tag_key, task_tags
from todo.tasks.listing import escape_like


class TagUsage(TypedDict):
    name: str
    usage_count: int


def tag_usage(
    connection: Connection, user_id: str, prefix: str | None, limit: int
) -> list[TagUsage]:
    """Tags used by at least one of the user's tasks, most used first, then by name."""
    usage_count = func.count(task_tags.c.task_id).label("usage_count")
    statement = (
        select(Tag.name, usage_count)
        .join(task_tags, task_tags.c.tag_id == Tag.id)
        .where(Tag.user_id == user_id)
        .group_by(Tag.id, Tag.name, Tag.name_key)
        .order_by(usage_count.desc(), Tag.name_key, Tag.name)
        .limit(limit)
    )
    if prefix:
        statement = statement.where(
            Tag.name_key.like(f"{escape_like(tag_key(prefix))}%", escape="\\")
        )
    return [
        {"name": row.name, "usage_count": int(row.usage_count)}
        for row in connection.execute(statement)
    ]
