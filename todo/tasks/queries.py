"""Reading one task, and the pieces every task read shares: the columns (the tag names
included, stored with the task, so no join) and the row -> JSON mapping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from todo.database import Reads
from todo.models import Task
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
    Task.tag_names,
)
# Built once: SQLAlchemy then reuses its compiled form on every call.
GET_TASK = select(*TASK_COLUMNS).where(
    Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id")
)


def row_to_json(row: Sequence[Any]) -> TaskJSON:
    """A row of `TASK_COLUMNS`, as the API shows it."""
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


def get_task(reads: Reads, user_id: str, task_id: uuid.UUID) -> TaskJSON | None:
    """The user's task with this id, or None (another user's task is None too)."""
    row = reads.first(GET_TASK, {"task_id": task_id, "user_id": user_id})
    return row_to_json(row) if row is not None else None
