"""Changing tasks: create, update, complete, delete, with their tags, in one transaction each.

Every write first upserts and locks the user's row (`lock_user`), so one user's writes apply
one at a time: per-user limits hold exactly, a new tag is created once however many requests
introduce it together, `If-Match` compares against the state it is about to change, and
pruning unused tags never races with a request that is linking them.

Every write that links tags also stores their names on the task (`tasks.tag_names`, in the
API's order), in the same transaction: reads take the names from there instead of joining.

The statements are built once, with bound parameters, and run in a `writing()` transaction
(todo/database.py). Every write returns the row as stored (`RETURNING`), rendered by
`task_json` like any read. Statements whose results are not needed (the lock, tag links,
pruning) are deferred: they travel with the next statement. A write whose only result is its
last statement (`Transaction.finish`: a toggle, a delete, a create without tags) is one round
trip on PostgreSQL; a create with tags is three.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import date
from typing import Any, cast

from flask import current_app
from sqlalchemy import (
    Boolean,
    Uuid,
    bindparam,
    case,
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

from todo.database import Transaction, writing
from todo.models import Tag, Task, User, tag_key, task_tags, utc_now
from todo.problems import ProblemError
from todo.sql import in_values
from todo.tasks.queries import GET_TASK
from todo.tasks.representation import (
    TASK_COLUMNS,
    TaskJSON,
    sort_tag_names,
    task_etag,
    task_json,
)

UPDATABLE_FIELDS = ("title", "description", "completed", "priority", "due_date")


def _lock_user_statement(dialect_insert: Callable[[Any], Any]) -> Any:
    # On PostgreSQL `ON CONFLICT DO UPDATE ... WHERE false` locks the existing row without
    # writing it; SQLite serialises writers anyway.
    statement = dialect_insert(User).values(
        id=bindparam("id"), created_at=bindparam("created_at", type_=User.created_at.type)
    )
    return statement.on_conflict_do_update(
        index_elements=[User.id], set_={"id": statement.excluded.id}, where=false()
    )


LOCK_USER = {
    "postgresql": _lock_user_statement(postgresql.insert),
    "sqlite": _lock_user_statement(sqlite.insert),
}
# The per-user task limit is checked by the insert itself: no row is inserted at the limit.
INSERT_TASK_UNDER_LIMIT = (
    insert(Task)
    .from_select(
        [column.key for column in TASK_COLUMNS],
        select(*(bindparam(column.key, type_=column.type) for column in TASK_COLUMNS)).where(
            select(User.task_count).where(User.id == bindparam("user_id")).scalar_subquery()
            < bindparam("task_limit")
        ),
    )
    .returning(*TASK_COLUMNS)
)
# `completed` set to the value given, or flipped when it is null; `updated_at` moves only
# when `completed` does. (SET expressions read the row's values before the update.)
SET_COMPLETION = (
    update(Task)
    .where(Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id"))
    .values(
        completed=func.coalesce(bindparam("completed", type_=Boolean), ~Task.completed),
        updated_at=case(
            (Task.completed == func.coalesce(bindparam("completed", type_=Boolean),
                                             ~Task.completed), Task.updated_at),
            else_=bindparam("now", type_=Task.updated_at.type),
        ),
    )
    .returning(*TASK_COLUMNS)
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
            in_values(Tag.name_key, "keys"),
            exists().where(
                task_tags.c.tag_id == Tag.id, task_tags.c.task_id != bindparam("task_id")
            ),
        ),
    )
)
FIND_TAGS = select(Tag.id, Tag.name, Tag.name_key).where(
    Tag.user_id == bindparam("user_id"), in_values(Tag.name_key, "keys")
)
INSERT_TAG = insert(Tag)
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
        .returning(*TASK_COLUMNS)
    )


DELETE_TASK = (
    delete(Task)
    .where(Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id"))
    .returning(Task.id)
)
# Tags that no task other than `except_task_id` uses (none given: that no task uses).
PRUNE_UNUSED_TAGS = delete(Tag).where(
    Tag.user_id == bindparam("user_id"),
    ~exists().where(
        task_tags.c.tag_id == Tag.id,
        task_tags.c.task_id.is_distinct_from(bindparam("except_task_id", type_=Uuid)),
    ),
)


def lock_user(tx: Transaction, user_id: str) -> None:
    """Create the user's row on first write (idempotent under concurrency) and lock it until
    the transaction ends. It takes effect with the next statement."""
    tx.defer(LOCK_USER[tx.dialect.name], {"id": user_id, "created_at": utc_now()})


def prune_unused_tags(
    tx: Transaction, user_id: str, except_task_id: uuid.UUID | None = None
) -> None:
    """Tags no task uses any more (or none but `except_task_id`, about to be deleted)
    disappear, so they stop counting towards the limit. It takes effect with the next
    statement (at the latest, `COMMIT`)."""
    tx.defer(PRUNE_UNUSED_TAGS, {"user_id": user_id, "except_task_id": except_task_id})


def _resolve_tags(
    tx: Transaction, user_id: str, task_id: uuid.UUID, names: Collection[str]
) -> dict[uuid.UUID, str]:
    """Ids and stored spellings of the tag names `task_id` is to have, creating the missing
    ones unless that takes the user past the tag cap."""
    if not names:
        return {}
    wanted = {tag_key(name): name for name in names}
    rows = tx.all(FIND_TAGS, {"user_id": user_id, "keys": list(wanted)})
    resolved = {tag_id: name for tag_id, name, _ in rows}
    missing = wanted.keys() - {name_key for _, _, name_key in rows}
    if missing:
        limit: int = current_app.config["MAX_TAGS_PER_USER"]
        kept = tx.scalar(
            COUNT_TAGS_KEPT, {"user_id": user_id, "task_id": task_id, "keys": list(wanted)}
        )
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
        for new_tag in new_tags:
            tx.defer(INSERT_TAG, new_tag)
        resolved.update({tag["id"]: tag["name"] for tag in new_tags})
    return resolved


def _link_tags(tx: Transaction, task_id: uuid.UUID, tag_ids: Collection[uuid.UUID]) -> None:
    for tag_id in tag_ids:
        tx.defer(INSERT_LINK, {"task_id": task_id, "tag_id": tag_id})


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
    with writing() as tx:
        lock_user(tx, user_id)
        tags = _resolve_tags(tx, user_id, values["id"], fields.get("tags", []))
        parameters = {**values, "tag_names": sort_tag_names(list(tags.values())),
                      "task_limit": limit}
        # Without tags this is the transaction's only result: one round trip on PostgreSQL.
        row = (tx.first if tags else tx.finish)(INSERT_TASK_UNDER_LIMIT, parameters)
        if row is None:
            raise ProblemError(409, f"Task limit reached: a user can have at most {limit} tasks.")
        _link_tags(tx, values["id"], tags)
    return task_json(row)


def _task_to_change(tx: Transaction, user_id: str, task_id: uuid.UUID) -> TaskJSON:
    """The task as it is, with the user's writes locked until this transaction ends."""
    lock_user(tx, user_id)
    row = tx.first(GET_TASK, {"task_id": task_id, "user_id": user_id})
    if row is None:
        raise _not_found()
    return task_json(row)


def update_task(
    user_id: str, task_id: uuid.UUID, changes: Mapping[str, Any], if_match: Any | None = None
) -> TaskJSON:
    """Apply any subset of fields; `tags` replaces the set. Unchanged values are no change."""
    with writing() as tx:
        current = _task_to_change(tx, user_id, task_id)
        _check_if_match(current, if_match)
        return _apply_changes(tx, user_id, task_id, current, changes)


def set_completion(user_id: str, task_id: uuid.UUID, completed: bool | None) -> TaskJSON:
    """Set `completed`, or flip it when `completed` is None: one statement, so on
    PostgreSQL one round trip."""
    with writing() as tx:
        lock_user(tx, user_id)
        row = tx.finish(SET_COMPLETION, {"task_id": task_id, "user_id": user_id,
                                         "completed": completed, "now": utc_now()})
    if row is None:
        raise _not_found()
    return task_json(row)


def _apply_changes(
    tx: Transaction,
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

    stored: dict[str, Any] = {**column_changes, "updated_at": utc_now()}
    resolved = _resolve_tags(tx, user_id, task_id, changes["tags"]) if tags_changed else {}
    if tags_changed:
        stored["tag_names"] = sort_tag_names(list(resolved.values()))
    row = tx.first(
        update_task_statement(tuple(stored)),
        {**stored, "where_task_id": task_id, "where_user_id": user_id},
    )
    assert row is not None  # the task is locked, and was read in this transaction
    if tags_changed:
        tx.defer(UNLINK_TAGS, {"task_id": task_id})
        _link_tags(tx, task_id, resolved)
        prune_unused_tags(tx, user_id)
    return task_json(row)


def _differs(current: TaskJSON, name: str, value: Any) -> bool:
    shown = cast(dict[str, Any], current)[name]
    if isinstance(value, date):
        return bool(shown != value.isoformat())
    return bool(shown != value)


def delete_task(user_id: str, task_id: uuid.UUID, if_match: Any | None = None) -> None:
    """Delete the task, and the tags only it used. Without `If-Match` nothing needs reading
    first: one round trip on PostgreSQL."""
    with writing() as tx:
        if if_match is not None:
            _check_if_match(_task_to_change(tx, user_id, task_id), if_match)
        else:
            lock_user(tx, user_id)
        # Before the task goes (its links go with it), so the pruning must look past it.
        prune_unused_tags(tx, user_id, except_task_id=task_id)
        deleted = tx.finish(DELETE_TASK, {"task_id": task_id, "user_id": user_id})
    if deleted is None:
        raise _not_found()
