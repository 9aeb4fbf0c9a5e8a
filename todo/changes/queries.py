"""Reading the changes after a change number: the tasks whose latest write is newer, and
the tombstones of deleted tasks, merged in the order the writes committed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, bindparam, select

from todo.data.database import Reads
from todo.data.models import Task, TaskTombstone
from todo.tasks.representation import TASK_COLUMNS, format_timestamp, task_json


def _newer(number: Any) -> Any:
    # Up to `upto`, the number read before: a change committed after it is left for the next
    # read, so nothing newer than the cursor handed out can be skipped.
    return (number > bindparam("after")) & (number <= bindparam("upto"))


CHANGED_TASKS = (
    select(*TASK_COLUMNS, Task.change_number)
    .where(Task.user_id == bindparam("user_id"), _newer(Task.change_number))
    .order_by(Task.change_number)
    .limit(bindparam("limit", type_=Integer))
)
TOMBSTONES = (
    select(TaskTombstone.task_id, TaskTombstone.deleted_at, TaskTombstone.change_number)
    .where(TaskTombstone.user_id == bindparam("user_id"), _newer(TaskTombstone.change_number))
    .order_by(TaskTombstone.change_number)
    .limit(bindparam("limit", type_=Integer))
)


def read_changes(reads: Reads, user_id: str, after: int | None, upto: int,
                 limit: int) -> tuple[dict[str, Any], int]:
    """The page of changes after `after` (None: from the beginning, current tasks only)
    through `upto`, at most `limit` of them; and the change number its cursor stands at."""
    parameters = {"user_id": user_id, "after": after or 0, "upto": upto, "limit": limit + 1}
    changed: list[tuple[int, str, Any]] = [
        (row[-1], "tasks", task_json(row[:-1])) for row in reads.all(CHANGED_TASKS, parameters)
    ]
    if after is not None:
        changed += [
            (number, "deleted", {"id": str(task_id), "deleted_at": format_timestamp(deleted_at)})
            for task_id, deleted_at, number in reads.all(TOMBSTONES, parameters)
        ]
    changed.sort(key=lambda change: change[0])
    page, has_more = changed[:limit], len(changed) > limit
    body: dict[str, Any] = {"tasks": [], "deleted": [], "has_more": has_more}
    for _, kind, item in page:
        body[kind].append(item)
    return body, page[-1][0] if has_more else upto
