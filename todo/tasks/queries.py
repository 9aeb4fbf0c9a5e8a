"""Reading one task."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select

from todo.data.database import Reads
from todo.data.models import Task
from todo.tasks.representation import TASK_COLUMNS, TaskJSON, task_json

# Built once: compiled once for each dialect (todo.data.sql.driver_statement).
GET_TASK = select(*TASK_COLUMNS).where(
    Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id")
)


def get_task(reads: Reads, user_id: str, task_id: uuid.UUID) -> TaskJSON | None:
    """The user's task with this id, or None (another user's task is None too)."""
    row = reads.first(GET_TASK, {"task_id": task_id, "user_id": user_id})
    return task_json(row) if row is not None else None
