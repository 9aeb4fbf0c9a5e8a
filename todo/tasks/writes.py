"""Changing tasks: create, update, complete, delete, with their tags, in one transaction each.

Every write first upserts and locks the user's row (`lock_user`), so one user's writes apply
one at a time: per-user limits hold exactly, a new tag is created once however many requests
introduce it together, `If-Match` compares against the state it is about to change, and
pruning unused tags never races with a request that is linking them.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date
from typing import Any, cast

from flask import current_app
from sqlalchemy import delete, exists, false, func, insert, select, update

from todo.database import dialect_insert
from todo.extensions import db
from todo.models import Tag, Task, User, tag_key, task_tags, utc_now
from todo.problems import ProblemError
from todo.tasks.queries import get_task
from todo.tasks.representation import (
    TaskJSON,
    format_timestamp,
    sort_tag_names,
    task_etag,
    task_json,
)

UPDATABLE_FIELDS = ("title", "description", "completed", "priority", "due_date")


def lock_user(user_id: str) -> None:
    """Create the user's row on first write (idempotent under concurrency) and lock it until
    the transaction ends. On PostgreSQL `ON CONFLICT DO UPDATE ... WHERE false` locks the
    existing row without writing it; SQLite serialises writers anyway."""
    statement = dialect_insert(User).values(id=user_id, created_at=utc_now())
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=[User.id], set_={"id": statement.excluded.id}, where=false()
        )
    )


def _resolve_tags(user_id: str, names: Collection[str]) -> dict[uuid.UUID, str]:
    """Ids and stored spellings of these tag names, creating the missing ones."""
    if not names:
        return {}
    wanted = {tag_key(name): name for name in names}
    rows = db.session.execute(
        select(Tag.id, Tag.name, Tag.name_key).where(
            Tag.user_id == user_id, Tag.name_key.in_(wanted)
        )
    ).all()
    resolved = {row.id: row.name for row in rows}
    missing = wanted.keys() - {row.name_key for row in rows}
    if missing:
        limit: int = current_app.config["MAX_TAGS_PER_USER"]
        in_use = db.session.execute(
            select(func.count()).select_from(Tag).where(Tag.user_id == user_id)
        ).scalar_one()
        if in_use + len(missing) > limit:
            raise ProblemError(
                409, f"Tag limit reached: a user can have at most {limit} distinct tags."
            )
        now = utc_now()
        new_tags = [
            {"id": uuid.uuid4(), "user_id": user_id, "name": wanted[key], "name_key": key,
             "created_at": now}
            for key in sorted(missing)
        ]
        db.session.execute(insert(Tag), new_tags)
        resolved.update({tag["id"]: tag["name"] for tag in new_tags})
    return resolved


def prune_unused_tags(user_id: str) -> None:
    """Tags no task uses any more disappear, so they stop counting towards the limit."""
    db.session.execute(
        delete(Tag).where(
            Tag.user_id == user_id,
            ~exists().where(task_tags.c.tag_id == Tag.id),
        )
    )


def _check_if_match(current: TaskJSON, if_match: Any | None) -> None:
    """`if_match` is werkzeug's parsed `If-Match` (None when the header is absent)."""
    if if_match is None:
        return
    if if_match.star_tag or if_match.contains(task_etag(current).strip('"')):
        return
    raise ProblemError(
        412, "The task has changed since the given ETag; fetch it again and retry."
    )


def _not_found() -> ProblemError:
    return ProblemError(404, "Task not found.")


def create_task(user_id: str, fields: Mapping[str, Any]) -> TaskJSON:
    lock_user(user_id)
    limit: int = current_app.config["MAX_TASKS_PER_USER"]
    count = db.session.execute(
        select(func.count()).select_from(Task).where(Task.user_id == user_id)
    ).scalar_one()
    if count >= limit:
        raise ProblemError(409, f"Task limit reached: a user can have at most {limit} tasks.")
    tags = _resolve_tags(user_id, fields.get("tags", []))
    now = utc_now()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "title": fields["title"],
        "description": fields.get("description"),
        "completed": False,
        "priority": fields.get("priority", "Medium"),
        "due_date": fields.get("due_date"),
        "created_at": now,
        "updated_at": now,
    }
    db.session.execute(insert(Task).values(values))
    if tags:
        db.session.execute(
            insert(task_tags), [{"task_id": values["id"], "tag_id": tag_id} for tag_id in tags]
        )
    db.session.commit()
    return task_json(**values, tags=list(tags.values()))


def _task_to_change(user_id: str, task_id: uuid.UUID) -> TaskJSON:
    """The task as it is, with the user's writes locked until this transaction ends."""
    lock_user(user_id)
    current = get_task(user_id, task_id)
    if current is None:
        raise _not_found()
    return current


def update_task(
    user_id: str, task_id: uuid.UUID, changes: Mapping[str, Any], if_match: Any | None = None
) -> TaskJSON:
    """Apply any subset of fields; `tags` replaces the set. Unchanged values are no change."""
    current = _task_to_change(user_id, task_id)
    _check_if_match(current, if_match)
    return _apply_changes(user_id, task_id, current, changes)


def set_completion(user_id: str, task_id: uuid.UUID, completed: bool | None) -> TaskJSON:
    """Set `completed`, or flip it when `completed` is None."""
    current = _task_to_change(user_id, task_id)
    target = (not current["completed"]) if completed is None else completed
    return _apply_changes(user_id, task_id, current, {"completed": target})


def _apply_changes(
    user_id: str, task_id: uuid.UUID, current: TaskJSON, changes: Mapping[str, Any]
) -> TaskJSON:
    column_changes = {
        name: changes[name]
        for name in UPDATABLE_FIELDS
        if name in changes and _differs(current, name, changes[name])
    }
    tags_changed = "tags" in changes and (
        {tag_key(name) for name in changes["tags"]} != {tag_key(name) for name in current["tags"]}
    )
    if not column_changes and not tags_changed:
        db.session.rollback()
        return current

    now = utc_now()
    db.session.execute(
        update(Task)
        .where(Task.id == task_id, Task.user_id == user_id)
        .values(**column_changes, updated_at=now)
    )
    tags = _replace_tags(user_id, task_id, changes["tags"]) if tags_changed else current["tags"]
    db.session.commit()
    shown = {
        name: value.isoformat() if isinstance(value, date) else value
        for name, value in column_changes.items()
    }
    updated = cast(dict[str, Any], dict(current))
    updated.update(shown, tags=sort_tag_names(tags), updated_at=format_timestamp(now))
    return cast(TaskJSON, updated)


def _differs(current: TaskJSON, name: str, value: Any) -> bool:
    shown = cast(dict[str, Any], current)[name]
    if isinstance(value, date):
        return bool(shown != value.isoformat())
    return bool(shown != value)


def _replace_tags(user_id: str, task_id: uuid.UUID, names: list[str]) -> list[str]:
    """Link exactly these tags to the task; returns their stored spellings."""
    tags = _resolve_tags(user_id, names)
    db.session.execute(
        delete(task_tags).where(
            task_tags.c.task_id == task_id, task_tags.c.tag_id.not_in(list(tags))
        )
    )
    linked = set(
        db.session.execute(
            select(task_tags.c.tag_id).where(task_tags.c.task_id == task_id)
        ).scalars()
    )
    new_links = [{"task_id": task_id, "tag_id": tag_id} for tag_id in tags if tag_id not in linked]
    if new_links:
        db.session.execute(insert(task_tags), new_links)
    prune_unused_tags(user_id)
    return list(tags.values())


def delete_task(user_id: str, task_id: uuid.UUID, if_match: Any | None = None) -> None:
    lock_user(user_id)
    if if_match is not None:
        current = get_task(user_id, task_id)
        if current is None:
            raise _not_found()
        _check_if_match(current, if_match)
    deleted = db.session.execute(
        delete(Task).where(Task.id == task_id, Task.user_id == user_id).returning(Task.id)
    ).first()
    if deleted is None:
        raise _not_found()
    prune_unused_tags(user_id)
    db.session.commit()
