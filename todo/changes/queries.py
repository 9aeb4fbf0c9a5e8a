"""Reading the changes after a change number: the tasks whose latest write is newer, and
the tombstones of deleted tasks, merged in the order the writes committed.

PostgreSQL reads both in one statement and writes each item's JSON itself (as a list page
does): 100 tasks rendered by Python cost 3-4 times a list page's CPU."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Integer, Text, bindparam, cast, func, literal, select, union_all

from todo.data.database import Reads
from todo.data.models import Task, TaskTombstone
from todo.tasks.representation import (
    TASK_COLUMNS,
    TIMESTAMP_FORMAT_SQL,
    format_timestamp,
    task_json,
    task_json_sql,
)


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


def _rendered(with_deletions: bool) -> Any:
    """PostgreSQL: (change number, is a deletion, the item's JSON), in change order."""
    tasks = select(
        Task.change_number.label("number"), literal(False).label("deleted"),
        cast(task_json_sql(Task.__table__.c), Text).label("item"),
    ).where(Task.user_id == bindparam("user_id"), _newer(Task.change_number))
    if not with_deletions:
        return tasks.order_by(Task.change_number).limit(bindparam("limit", type_=Integer))
    tombstones = select(
        TaskTombstone.change_number.label("number"), literal(True).label("deleted"),
        cast(func.json_build_object(
            "id", TaskTombstone.task_id,
            "deleted_at", func.to_char(func.timezone("UTC", TaskTombstone.deleted_at),
                                       TIMESTAMP_FORMAT_SQL),
        ), Text).label("item"),
    ).where(TaskTombstone.user_id == bindparam("user_id"), _newer(TaskTombstone.change_number))
    both = union_all(tasks, tombstones).subquery("changes")
    return (
        select(both.c.number, both.c.deleted, both.c.item)
        .order_by(both.c.number)
        .limit(bindparam("limit", type_=Integer))
    )


RENDERED_CHANGES = {True: _rendered(with_deletions=True), False: _rendered(with_deletions=False)}


def read_changes(reads: Reads, user_id: str, after: int | None, upto: int,
                 limit: int) -> tuple[bytes, int]:
    """The page of changes after `after` (None: from the beginning, current tasks only)
    through `upto`, at most `limit` of them, as the answer's JSON without its cursor; and
    the change number that cursor stands at."""
    if after == upto:  # nothing new: no query
        return b'{"tasks":[],"deleted":[],"has_more":false', upto
    parameters = {"user_id": user_id, "after": after or 0, "upto": upto, "limit": limit + 1}
    if reads.dialect.name == "postgresql":
        rows = reads.all(RENDERED_CHANGES[after is not None], parameters)
        items = [(number, deleted, item.encode()) for number, deleted, item in rows]
    else:
        items = _python_items(reads, parameters, after is not None)
    page, has_more = items[:limit], len(items) > limit
    tasks = b",".join(item for _, deleted, item in page if not deleted)
    deleted = b",".join(item for _, is_deletion, item in page if is_deletion)
    body = (b'{"tasks":[' + tasks + b'],"deleted":[' + deleted + b'],"has_more":'
            + (b"true" if has_more else b"false"))
    return body, page[-1][0] if has_more else upto


def _python_items(reads: Reads, parameters: dict[str, Any],
                  with_deletions: bool) -> list[tuple[int, bool, bytes]]:
    items = [(row[-1], False, orjson.dumps(task_json(row[:-1])))
             for row in reads.all(CHANGED_TASKS, parameters)]
    if with_deletions:
        items += [
            (number, True, orjson.dumps({"id": str(task_id),
                                          "deleted_at": format_timestamp(deleted_at)}))
            for task_id, deleted_at, number in reads.all(TOMBSTONES, parameters)
        ]
    items.sort(key=lambda item: item[0])
    return items
