"""A task as the API shows it, declared once (`TASK_FIELDS`): its JSON keys, the column each
comes from and how each value is written. Both renderers derive from that declaration:
`task_json` in Python (one task), `task_json_sql` in SQL (PostgreSQL writes a list page's
JSON itself, so no Python object is built per task), and the ETag hashes what is sent.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypedDict, cast

import orjson
from sqlalchemy import func
from sqlalchemy.orm import InstrumentedAttribute

from todo.data.models import Task, tag_key

# UTC with microseconds and a `Z`, in Python and in PostgreSQL's to_char.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
TIMESTAMP_FORMAT_SQL = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


class Kind(enum.Enum):
    PLAIN = "plain"  # JSON as the column holds it: text, boolean, a JSON list
    UUID = "uuid"
    DATE = "date"  # YYYY-MM-DD
    TIMESTAMP = "timestamp"  # TIMESTAMP_FORMAT


@dataclass(frozen=True)
class TaskField:
    name: str
    column: InstrumentedAttribute[Any]
    kind: Kind = Kind.PLAIN


TASK_FIELDS = (
    TaskField("id", Task.id, Kind.UUID),
    TaskField("user_id", Task.user_id),
    TaskField("title", Task.title),
    TaskField("description", Task.description),
    TaskField("completed", Task.completed),
    TaskField("priority", Task.priority),
    TaskField("due_date", Task.due_date, Kind.DATE),
    # The task's tag names, stored with it in the API's order (see `sort_tag_names`).
    TaskField("tags", Task.tag_names),
    TaskField("created_at", Task.created_at, Kind.TIMESTAMP),
    TaskField("updated_at", Task.updated_at, Kind.TIMESTAMP),
)
# What a statement selects (or returns) to render a task: one column per field, in order.
TASK_COLUMNS = tuple(field.column for field in TASK_FIELDS)


class TaskJSON(TypedDict):
    id: str
    user_id: str
    title: str
    description: str | None
    completed: bool
    priority: str
    due_date: str | None
    tags: list[str]
    created_at: str
    updated_at: str


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _json_value(kind: Kind, value: Any) -> Any:
    if value is None or kind is Kind.PLAIN:
        return value
    if kind is Kind.UUID:
        return str(value)
    if kind is Kind.DATE:
        return cast(date, value).isoformat()
    return format_timestamp(value)


def task_json(row: Sequence[Any]) -> TaskJSON:
    """A row of `TASK_COLUMNS`, as the API shows it."""
    return cast(TaskJSON, {
        field.name: _json_value(field.kind, value)
        for field, value in zip(TASK_FIELDS, row, strict=False)
    })


def _sql_value(kind: Kind, column: Any) -> Any:
    if kind is Kind.DATE:
        return func.to_char(column, "YYYY-MM-DD")
    if kind is Kind.TIMESTAMP:
        return func.to_char(func.timezone("UTC", column), TIMESTAMP_FORMAT_SQL)
    return column  # json_build_object writes uuids, text, booleans and json as JSON already


def task_json_sql(columns: Any) -> Any:
    """PostgreSQL's `json_build_object` of a task, from `columns` (a table's or a
    subquery's `.c`) holding the `TASK_COLUMNS`: the JSON `task_json` gives, as SQL."""
    arguments: list[Any] = []
    for field in TASK_FIELDS:
        arguments += [field.name, _sql_value(field.kind, columns[field.column.key])]
    return func.json_build_object(*arguments)


def sort_tag_names(names: list[str]) -> list[str]:
    """The API's order of tag names. Writes store `tasks.tag_names` in it, so reads show the
    stored list as it is."""
    return sorted(names, key=lambda name: (tag_key(name), name))


def task_etag(task: TaskJSON | dict[str, Any]) -> str:
    """A strong ETag: a digest of the representation, so it changes whenever any field does."""
    digest = hashlib.sha256(orjson.dumps(task, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'
