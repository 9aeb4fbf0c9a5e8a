"""Changing tasks: create, update, complete, delete, with their tags, in one transaction each.

Every write first upserts and locks the user's row (`lock_user`), so one user's writes apply
one at a time: per-user limits hold exactly, a new tag is created once however many requests
introduce it together, `If-Match` compares against the state it is about to change, and
pruning unused tags never races with a request that is linking them.

Every write that links tags also stores their names on the task (`tasks.tag_names`, in the
API's order), in the same transaction: reads take the names from there instead of joining.

The statements are built once, with bound parameters, and run in a `write_transaction`:
building SQLAlchemy statements per request cost more Python time than running them.
Statements whose results are not needed (the lock, updates, tag links, pruning) travel with
the next statement or with `COMMIT` (`send_with_next_statement`), so on PostgreSQL a toggle is
two round trips, and a create three.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import date
from typing import Any, cast

from flask import current_app
from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Update

from todo.database import send_with_next_statement, write_transaction
from todo.models import Tag, Task, User, tag_key, task_tags, utc_now
from todo.problems import ProblemError
from todo.tasks.queries import TASK_COLUMNS, get_task
from todo.tasks.representation import (
    TaskJSON,
    format_timestamp,
    sort_tag_names,
    task_etag,
    task_json,
)

UPDATABLE_FIELDS = ("title", "description", "completed", "priority", "due_date")


def _lock_user_statement(dialect_insert: Callable[[Any], Any]) -> Any:
    # On PostgreSQL `ON CONFLICT DO UPDATE ... WHERE false` locks the existing row without
    # writing it; SQLite serialises writers anyway.
    statement = dialect_insert(User)
    return statement.on_conflict_do_update(
        index_elements=[User.id], set_={"id": statement.excluded.id}, where=false()
    )


LOCK_USER = {
    "postgresql": _lock_user_statement(postgresql.insert),
    "sqlite": _lock_user_statement(sqlite.insert),
}
# The per-user task limit is checked by the insert itself: no row is inserted at the limit.
INSERT_TASK_UNDER_LIMIT = insert(Task).from_select(
    [column.key for column in TASK_COLUMNS],
    select(*(bindparam(column.key, type_=column.type) for column in TASK_COLUMNS)).where(
        select(func.count())
        .select_from(Task)
        .where(Task.user_id == bindparam("user_id"))
        .scalar_subquery()
        < bindparam("task_limit")
    ),
)
# The user's tags still in use once a write has replaced one task's tags: those another task
# uses, and the existing ones the write links. This task's other tags are pruned in the same
# transaction, so they do not count against the cap.
COUNT_TAGS_KEPT = (
    select(func.count())
    .select_from(Tag)
    .where(
        Tag.user_id == bindparam("user_id"),
        or_(
            Tag.name_key.in_(bindparam("keys", expanding=True)),
            exists().where(
                task_tags.c.tag_id == Tag.id, task_tags.c.task_id != bindparam("task_id")
            ),
        ),
    )
)
FIND_TAGS = select(Tag.id, Tag.name, Tag.name_key).where(
    Tag.user_id == bindparam("user_id"), Tag.name_key.in_(bindparam("keys", expanding=True))
)
INSERT_TAGS = insert(Tag)
INSERT_LINK = insert(task_tags)
UNLINK_TAGS = delete(task_tags).where(task_tags.c.task_id == bindparam("task_id"))


@functools.cache
def update_task_statement(columns: tuple[str, ...]) -> Update:
    """UPDATE of these columns of one task (one statement per set of columns, built once).
    The WHERE parameter names cannot clash with a column's."""
    return (
        update(Task)
        .where(Task.id == bindparam("where_task_id"), Task.user_id == bindparam("where_user_id"))
        .values({name: bindparam(name, type_=Task.__table__.c[name].type) for name in columns})
    )


DELETE_TASK = (
    delete(Task)
    .where(Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id"))
    .returning(Task.id)
)
PRUNE_UNUSED_TAGS = delete(Tag).where(
    Tag.user_id == bindparam("user_id"), ~exists().where(task_tags.c.tag_id == Tag.id)
)


def lock_user(connection: Connection, user_id: str) -> None:
    """Create the user's row on first write (idempotent under concurrency) and lock it until
    the transaction ends. It takes effect with the next statement."""
    send_with_next_statement(
        connection, LOCK_USER[connection.dialect.name], {"id": user_id, "created_at": utc_now()}
    )


def prune_unused_tags(connection: Connection, user_id: str) -> None:
    """Tags no task uses any more disappear, so they stop counting towards the limit. It
    takes effect with the next statement (at the latest, `COMMIT`)."""
    send_with_next_statement(connection, PRUNE_UNUSED_TAGS, {"user_id": user_id})


def _resolve_tags(
    connection: Connection, user_id: str, task_id: uuid.UUID, names: Collection[str]
) -> dict[uuid.UUID, str]:
    """Ids and stored spellings of the tag names `task_id` is to have, creating the missing
    ones unless that takes the user past the tag cap."""
    if not names:
        return {}
    wanted = {tag_key(name): name for name in names}
    rows = connection.execute(FIND_TAGS, {"user_id": user_id, "keys": list(wanted)}).all()
    resolved = {row.id: row.name for row in rows}
    missing = wanted.keys() - {row.name_key for row in rows}
    if missing:
        limit: int = current_app.config["MAX_TAGS_PER_USER"]
        kept = connection.execute(
            COUNT_TAGS_KEPT, {"user_id": user_id, "task_id": task_id, "keys": list(wanted)}
        ).scalar_one()
        if kept + len(missing) > limit:
            raise ProblemError(
                409, f"Tag limit reached: a user can have at most {limit} distinct tags."
            )
        now = utc_now()
        new_tags = [
            {"id": uuid.uuid4(), "user_id": user_id, "name": wanted[key], "name_key": key,
             "created_at": now}
            for key in sorted(missing)
        ]
        connection.execute(INSERT_TAGS, new_tags)
        resolved.update({tag["id"]: tag["name"] for tag in new_tags})
    return resolved


def _link_tags(connection: Connection, task_id: uuid.UUID, tag_ids: Collection[uuid.UUID]) -> None:
    for tag_id in tag_ids:
        send_with_next_statement(connection, INSERT_LINK, {"task_id": task_id, "tag_id": tag_id})


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
    limit: int = current_app.config["MAX_TASKS_PER_USER"]
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
    with write_transaction() as connection:
        lock_user(connection, user_id)
        tags = _resolve_tags(connection, user_id, values["id"], fields.get("tags", []))
        tag_names = sort_tag_names(list(tags.values()))
        inserted = connection.execute(
            INSERT_TASK_UNDER_LIMIT, {**values, "tag_names": tag_names, "task_limit": limit}
        )
        if inserted.rowcount == 0:
            raise ProblemError(409, f"Task limit reached: a user can have at most {limit} tasks.")
        _link_tags(connection, values["id"], tags)
    return task_json(**values, tags=tag_names)


def _task_to_change(connection: Connection, user_id: str, task_id: uuid.UUID) -> TaskJSON:
    """The task as it is, with the user's writes locked until this transaction ends."""
    lock_user(connection, user_id)
    current = get_task(connection, user_id, task_id)
    if current is None:
        raise _not_found()
    return current


def update_task(
    user_id: str, task_id: uuid.UUID, changes: Mapping[str, Any], if_match: Any | None = None
) -> TaskJSON:
    """Apply any subset of fields; `tags` replaces the set. Unchanged values are no change."""
    with write_transaction() as connection:
        current = _task_to_change(connection, user_id, task_id)
        _check_if_match(current, if_match)
        return _apply_changes(connection, user_id, task_id, current, changes)


def set_completion(user_id: str, task_id: uuid.UUID, completed: bool | None) -> TaskJSON:
    """Set `completed`, or flip it when `completed` is None."""
    with write_transaction() as connection:
        current = _task_to_change(connection, user_id, task_id)
        target = (not current["completed"]) if completed is None else completed
        return _apply_changes(connection, user_id, task_id, current, {"completed": target})


def _apply_changes(
    connection: Connection,
    user_id: str,
    task_id: uuid.UUID,
    current: TaskJSON,
    changes: Mapping[str, Any],
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
        return current

    now = utc_now()
    stored: dict[str, Any] = {**column_changes, "updated_at": now}
    resolved = _resolve_tags(connection, user_id, task_id, changes["tags"]) if tags_changed else {}
    if tags_changed:
        stored["tag_names"] = sort_tag_names(list(resolved.values()))
    send_with_next_statement(
        connection,
        update_task_statement(tuple(stored)),
        {**stored, "where_task_id": task_id, "where_user_id": user_id},
    )
    if tags_changed:
        send_with_next_statement(connection, UNLINK_TAGS, {"task_id": task_id})
        _link_tags(connection, task_id, resolved)
        prune_unused_tags(connection, user_id)
    shown = {
        name: value.isoformat() if isinstance(value, date) else value
        for name, value in column_changes.items()
    }
    updated = cast(dict[str, Any], dict(current))
    updated.update(shown, updated_at=format_timestamp(now))
    if tags_changed:
        updated["tags"] = stored["tag_names"]
    return cast(TaskJSON, updated)


def _differs(current: TaskJSON, name: str, value: Any) -> bool:
    shown = cast(dict[str, Any], current)[name]
    if isinstance(value, date):
        return bool(shown != value.isoformat())
    return bool(shown != value)


def delete_task(user_id: str, task_id: uuid.UUID, if_match: Any | None = None) -> None:
    with write_transaction() as connection:
        if if_match is not None:
            _check_if_match(_task_to_change(connection, user_id, task_id), if_match)
        else:
            lock_user(connection, user_id)
        deleted = connection.execute(DELETE_TASK, {"task_id": task_id, "user_id": user_id})
        if deleted.first() is None:
            raise _not_found()
        prune_unused_tags(connection, user_id)
