"""Reading one task, and the pieces every task read shares: the columns, the tag names
aggregated in the same statement (no query per task), and the row -> JSON mapping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import JSON

from todo.models import Tag, Task, task_tags
from todo.tasks.representation import TaskJSON, task_json

TASK_COLUMNS = (
    Task.id,
    Task.user_id,
    Task.title,
    Task.description,
    Task.completed,
    Task.priority,
    Task.due_date,
    Task.created_at,
    Task.updated_at,
)


class tag_names_agg(GenericFunction[list[str]]):
    """Tag names as a JSON array: `json_agg` on PostgreSQL, `json_group_array` on SQLite."""

    type = JSON()
    inherit_cache = True
    name = "tag_names_agg"


@compiles(tag_names_agg, "postgresql")
def _compile_tag_names_agg_pg(element: tag_names_agg, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg({compiler.process(element.clauses, **kw)})"


@compiles(tag_names_agg, "sqlite")
def _compile_tag_names_agg_sqlite(element: tag_names_agg, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


# The tag's owner is the task's owner; saying so lets PostgreSQL read only that user's tags
# (through their unique index) instead of scanning the table for every task.
TAGS_OF_TASK = and_(task_tags.c.task_id == Task.id, Tag.user_id == Task.user_id)
TAG_NAMES_OF_TASK = (
    select(tag_names_agg(Tag.name))
    .select_from(task_tags.join(Tag, Tag.id == task_tags.c.tag_id))
    .where(TAGS_OF_TASK)
    .scalar_subquery()
    .label("tags")
)
# Built once: SQLAlchemy then reuses its compiled form on every call.
GET_TASK = select(*TASK_COLUMNS, TAG_NAMES_OF_TASK).where(
    Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id")
)


def row_to_json(row: Sequence[Any]) -> TaskJSON:
    """A row of `TASK_COLUMNS` followed by the tags column, as the API shows it."""
    id, user_id, title, description, completed, priority, due_date, created, updated, tags = (
        row[:10]
    )
    return task_json(
        id=id,
        user_id=user_id,
        title=title,
        description=description,
        completed=completed,
        priority=priority,
        due_date=due_date,
        tags=tags,
        created_at=created,
        updated_at=updated,
    )


def get_task(connection: Connection, user_id: str, task_id: uuid.UUID) -> TaskJSON | None:
    """The user's task with this id, or None (another user's task is None too)."""
    row = connection.execute(GET_TASK, {"task_id": task_id, "user_id": user_id}).first()
    return row_to_json(row) if row is not None else None
