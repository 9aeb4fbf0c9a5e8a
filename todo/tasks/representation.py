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
from typing import Any, cast

import marshmallow as ma
import orjson
from sqlalchemy import func
from sqlalchemy.orm import InstrumentedAttribute

from todo.data.models import Priority, Task, tag_key

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
    # How the OpenAPI document describes it (`TaskSchema` is made of these).
    documented_as: ma.fields.Field[Any]
    kind: Kind = Kind.PLAIN
    # Set from a create's or an update's body (validated by TaskCreateSchema and
    # TaskUpdateSchema); a create that leaves it out stores `default`.
    writable: bool = False
    default: Any = None


def _required(field: ma.fields.Field[Any]) -> ma.fields.Field[Any]:
    field.required = True
    return field


TASK_FIELDS = (
    TaskField("id", Task.id, _required(ma.fields.UUID()), Kind.UUID),
    TaskField("user_id", Task.user_id, _required(ma.fields.String())),
    TaskField("title", Task.title, _required(ma.fields.String()), writable=True),
    TaskField("description", Task.description, _required(ma.fields.String(allow_none=True)),
              writable=True),
    TaskField("completed", Task.completed, _required(ma.fields.Boolean()), writable=True,
              default=False),
    TaskField("priority", Task.priority, _required(ma.fields.String(
        validate=ma.validate.OneOf([priority.value for priority in Priority]))),
        writable=True, default=Priority.MEDIUM.value),
    TaskField("due_date", Task.due_date, _required(ma.fields.Date(allow_none=True)), Kind.DATE,
              writable=True),
    # The task's tag names, stored with it in the API's order (see `sort_tag_names`). Set
    # through the tag links (writes.py), not as a plain column.
    TaskField("tags", Task.tag_names, _required(ma.fields.List(ma.fields.String()))),
    TaskField("created_at", Task.created_at, _required(ma.fields.DateTime()), Kind.TIMESTAMP),
    TaskField("updated_at", Task.updated_at, _required(ma.fields.DateTime()), Kind.TIMESTAMP),
)
# What a statement selects (or returns) to render a task: one column per field, in order.
TASK_COLUMNS = tuple(field.column for field in TASK_FIELDS)
# The fields a body may set, besides `tags`.
WRITABLE_FIELDS = tuple(field for field in TASK_FIELDS if field.writable)

# A task as the API shows it: `TASK_FIELDS`' names and JSON values.
TaskJSON = dict[str, Any]

# The OpenAPI description of a task (documentation: views send `task_json`'s output).
TaskSchema = ma.Schema.from_dict(
    {field.name: field.documented_as for field in TASK_FIELDS}, name="TaskSchema"
)


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
    return {
        field.name: _json_value(field.kind, value)
        for field, value in zip(TASK_FIELDS, row, strict=False)
    }


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
