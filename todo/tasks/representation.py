"""A task as the API shows it: JSON-ready dict, timestamps, tag order and its ETag."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Any, TypedDict

import orjson

from todo.models import tag_key


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
    """UTC, ISO 8601, always six fractional digits and a `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sort_tag_names(names: list[str]) -> list[str]:
    """The API's order of tag names. Writes store `tasks.tag_names` in it, so reads show the
    stored list as it is."""
    return sorted(names, key=lambda name: (tag_key(name), name))


def task_json(
    *,
    id: uuid.UUID,
    user_id: str,
    title: str,
    description: str | None,
    completed: bool,
    priority: str,
    due_date: date | None,
    tags: list[str],
    created_at: datetime,
    updated_at: datetime,
) -> TaskJSON:
    return {
        "id": str(id),
        "user_id": user_id,
        "title": title,
        "description": description,
        "completed": completed,
        "priority": priority,
        "due_date": due_date.isoformat() if due_date is not None else None,
        "tags": tags,
        "created_at": format_timestamp(created_at),
        "updated_at": format_timestamp(updated_at),
    }


def task_etag(task: TaskJSON | dict[str, Any]) -> str:
    """A strong ETag: a digest of the representation, so it changes whenever any field does."""
    digest = hashlib.sha256(orjson.dumps(task, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'
