"""Reading tasks: one task by id, and the filtered, sorted, paginated listing.

Each read is a single statement: the tags of every returned task are aggregated in the same
query (no query per task), and the listing counts all matches with a window function.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import JSON

from todo.extensions import db
from todo.models import Priority, Tag, Task, tag_key, task_tags
from todo.tasks.representation import TaskJSON, task_json

SortKey = Literal["created_at", "updated_at", "title", "due_date", "priority"]
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


def _tag_names_of_task() -> Any:
    return (
        select(tag_names_agg(Tag.name))
        .select_from(task_tags.join(Tag, Tag.id == task_tags.c.tag_id))
        .where(task_tags.c.task_id == Task.id)
        .scalar_subquery()
        .label("tags")
    )


def _row_to_json(row: Row[Any]) -> TaskJSON:
    values = row._mapping
    return task_json(
        id=values["id"],
        user_id=values["user_id"],
        title=values["title"],
        description=values["description"],
        completed=values["completed"],
        priority=values["priority"],
        due_date=values["due_date"],
        tags=values["tags"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def get_task(user_id: str, task_id: uuid.UUID) -> TaskJSON | None:
    """The user's task with this id, or None (another user's task is None too)."""
    statement = select(*TASK_COLUMNS, _tag_names_of_task()).where(
        Task.id == task_id, Task.user_id == user_id
    )
    row = db.session.execute(statement).first()
    return _row_to_json(row) if row is not None else None


@dataclass(frozen=True)
class TaskListArgs:
    search: str | None = None
    status: Literal["all", "pending", "completed"] = "all"
    priority: str | None = None
    tags: list[str] = field(default_factory=list)
    tag_mode: Literal["any", "all"] = "any"
    due_from: date | None = None
    due_to: date | None = None
    sort_by: SortKey = "created_at"
    sort_direction: Literal["asc", "desc"] = "desc"
    limit: int = 50
    offset: int = 0


def escape_like(text: str) -> str:
    """Make `%`, `_` and the escape character itself match literally in a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(user_id: str, args: TaskListArgs) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Task.user_id == user_id]
    if args.search:
        pattern = f"%{escape_like(args.search)}%"
        conditions.append(
            or_(
                Task.title.ilike(pattern, escape="\\"),
                Task.description.ilike(pattern, escape="\\"),
            )
        )
    if args.status != "all":
        conditions.append(Task.completed.is_(args.status == "completed"))
    if args.priority is not None:
        conditions.append(Task.priority == args.priority)
    if args.due_from is not None:
        conditions.append(Task.due_date >= args.due_from)
    if args.due_to is not None:
        conditions.append(Task.due_date <= args.due_to)
    if args.tags:
        conditions.append(Task.id.in_(_tasks_with_tags(user_id, args.tags, args.tag_mode)))
    return conditions


def _tasks_with_tags(user_id: str, names: list[str], mode: Literal["any", "all"]) -> Select[Any]:
    keys = sorted({tag_key(name) for name in names})
    tagged = (
        select(task_tags.c.task_id)
        .join(Tag, Tag.id == task_tags.c.tag_id)
        .where(Tag.user_id == user_id, Tag.name_key.in_(keys))
    )
    if mode == "all":
        tagged = tagged.group_by(task_tags.c.task_id).having(func.count() == len(keys))
    return tagged


PRIORITY_RANK = case(
    {Priority.HIGH.value: 0, Priority.MEDIUM.value: 1, Priority.LOW.value: 2},
    value=Task.priority,
    else_=3,
)


def _ordering(sort_by: SortKey, direction: Literal["asc", "desc"]) -> list[Any]:
    descending = direction == "desc"
    keys: list[Any]
    if sort_by == "due_date":
        primary = Task.due_date.desc() if descending else Task.due_date.asc()
        keys = [primary.nulls_last()]
    else:
        expression = {
            "created_at": Task.created_at,
            "updated_at": Task.updated_at,
            "title": func.lower(Task.title),
            "priority": PRIORITY_RANK,
        }[sort_by]
        keys = [expression.desc() if descending else expression.asc()]
    if sort_by != "created_at":
        keys.append(Task.created_at.desc())
    keys.append(Task.id.asc())
    return keys


def list_statement(user_id: str, args: TaskListArgs) -> Select[Any]:
    """The page query: tasks, their tags and the count of all matches, in one statement."""
    return (
        select(*TASK_COLUMNS, _tag_names_of_task(), func.count().over().label("total"))
        .where(and_(*_filters(user_id, args)))
        .order_by(*_ordering(args.sort_by, args.sort_direction))
        .limit(args.limit)
        .offset(args.offset)
    )


def list_tasks(user_id: str, args: TaskListArgs) -> tuple[list[TaskJSON], int]:
    """One page of the user's tasks matching `args`, and the number of all matches."""
    rows = db.session.execute(list_statement(user_id, args)).all()
    if rows:
        total = int(rows[0]._mapping["total"])
    elif args.offset:
        # Past the last page no row carries the window count; count separately.
        total = db.session.execute(
            select(func.count()).select_from(Task).where(and_(*_filters(user_id, args)))
        ).scalar_one()
    else:
        total = 0
    return [_row_to_json(row) for row in rows], total


