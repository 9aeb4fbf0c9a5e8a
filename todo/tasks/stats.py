"""Counts of a user's tasks: `GET /api/{user_id}/tasks/stats`.

The tasks counted are those the listing would show for the same filters: the WHERE condition
is the listing's own (`listing.filter_condition`, with the listing's bound values), so a
filter is written once. Every count comes from one statement and one pass over the matching
rows: `count(*) FILTER (WHERE ...)` per count, which PostgreSQL and SQLite (3.30 and later)
both run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select

from todo.data.database import Reads
from todo.data.models import Priority, Task
from todo.tasks.listing import ListShape, TaskListArgs, bound_values, filter_condition

PRIORITIES = tuple(priority.value for priority in Priority)


@dataclass(frozen=True)
class TaskStatsArgs:
    """What the counts take: the listing's filters (`filters`' status, order and page are
    always their defaults, which narrow nothing) and the client's date, None when the
    request gave none (the view then takes the UTC date when it runs, never when the query
    string was first parsed: parsed arguments are cached per query string)."""

    filters: TaskListArgs
    today: date | None = None


class TaskStats(TypedDict):
    total: int
    pending: int
    completed: int
    overdue: int
    due_today: int
    by_priority: dict[str, int]


def _counts() -> list[Any]:
    """The counted columns, in `TaskStats`' order, then one per priority."""
    pending = Task.completed.is_(False)
    today = bindparam("today", type_=Task.due_date.type)

    def count(condition: ColumnElement[bool] | None = None) -> Any:
        return func.count() if condition is None else func.count().filter(condition)

    return [
        count(),
        count(pending),
        count(Task.completed.is_(True)),
        # A task without a due date is neither overdue nor due today (NULL compares false).
        count(and_(pending, Task.due_date < today)),
        count(and_(pending, Task.due_date == today)),
        *(count(and_(pending, Task.priority == priority)) for priority in PRIORITIES),
    ]


@lru_cache(maxsize=512)
def _statement(shape: ListShape) -> Select[Any]:
    """The counts of the tasks matching `shape`'s filters (built once per shape, like the
    listing's statements)."""
    return select(*_counts()).select_from(Task).where(filter_condition(shape))


def task_stats(reads: Reads, user_id: str, args: TaskListArgs, today: date) -> TaskStats:
    """The counts of the user's tasks that match `args`' filters, as the API shows them."""
    parameters = {**bound_values(user_id, args), "today": today}
    row = reads.first(_statement(ListShape.of(args)), parameters)
    assert row is not None  # aggregates without GROUP BY: always one row
    total, pending, completed, overdue, due_today, *by_priority = (int(n) for n in row)
    return {
        "total": total,
        "pending": pending,
        "completed": completed,
        "overdue": overdue,
        "due_today": due_today,
        "by_priority": dict(zip(PRIORITIES, by_priority, strict=True)),
    }
