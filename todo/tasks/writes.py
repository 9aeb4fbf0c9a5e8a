"""Changing tasks: create, update, complete, delete, with their tags.

Each operation is a function of an open transaction (`create_in`, `update_in`, `complete_in`,
`delete_in`): a request's own write runs one in a transaction of its own (`create_task`,
...), a batch (todo/tasks/batch.py) runs several in one.

Every transaction that writes first upserts and locks the user's row (`lock_user`), so one
user's writes apply one at a time: per-user limits hold exactly, a new tag is created once
however many requests introduce it together, and `If-Match` compares against the state it is
about to change. The operations expect that lock to be taken.

The database keeps the counts (migration 0005): `users.task_count` for the task limit, and
`tags.usage_count`, whose trigger deletes a tag with its last link. So a write only links
and unlinks; it never searches for unused tags.

Every write that links tags also stores their names on the task (`tasks.tag_names`, in the
API's order), in the same transaction: reads take the names from there instead of joining.

A write returns the task as stored, rendered by `task_json` like any read: from `RETURNING`
when the statement is the one whose result decides the answer, or from the row it read and
the values it wrote (the same Python values a read gives back).

The statements are built once, with bound parameters, and run in a `writing()` transaction
(todo/data/database.py). Statements whose results are not needed are deferred: they travel with
the next statement, or with `COMMIT`. On PostgreSQL a toggle, a delete and a create without
tags are one round trip (`Transaction.finish`); an edit is two, a create with tags two, and
an edit of the tags three.

A batch's operations also share what the transaction has learnt of the user's data (`Known`:
the task count, tags known to exist), so a create whose tags an earlier operation of the
batch has seen sends no statement of its own until `COMMIT`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import (
    Boolean,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Update

from todo.api.problems import ProblemError
from todo.changes.purge import PURGE_USER, tombstone_cutoff
from todo.data.database import Transaction, writing
from todo.data.models import Tag, Task, User, tag_key, task_tags, utc_now
from todo.data.sql import in_values
from todo.tasks.queries import GET_TASK
from todo.tasks.representation import (
    TASK_COLUMNS,
    WRITABLE_FIELDS,
    TaskJSON,
    sort_tag_names,
    task_etag,
    task_json,
)

Row = Sequence[Any]


def _lock_user_statement(dialect_insert: Callable[[Any], Any]) -> Any:
    # `ON CONFLICT DO UPDATE ... WHERE false` locks the existing row without writing it
    # (PostgreSQL; SQLite serialises writers anyway).
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
INSERT_TASK = insert(Task).values(
    {column.key: bindparam(column.key, type_=column.type) for column in TASK_COLUMNS}
)
# The same, checking the per-user task limit itself (no row at the limit): a create's only
# statement when it links no tags.
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
# The user's task count, and the existing tags among `keys` (none: one row of nulls).
TASK_COUNT_AND_TAGS = (
    select(User.task_count, Tag.id, Tag.name, Tag.name_key)
    .select_from(User)
    .outerjoin(Tag, (Tag.user_id == User.id) & in_values(Tag.name_key, "keys"))
    .where(User.id == bindparam("user_id"))
)
TASK_COUNT = select(User.task_count).where(User.id == bindparam("user_id"))
FIND_TAGS = select(Tag.id, Tag.name, Tag.name_key).where(
    Tag.user_id == bindparam("user_id"), in_values(Tag.name_key, "keys")
)
# The user's tags still in use once a write has given one task the tags `keys` (it had
# `current_keys`): those among `keys`, and those some other task uses.
COUNT_TAGS_KEPT = (
    select(func.count())
    .select_from(Tag)
    .where(
        Tag.user_id == bindparam("user_id"),
        or_(
            in_values(Tag.name_key, "keys"),
            Tag.usage_count > case((in_values(Tag.name_key, "current_keys"), 1), else_=0),
        ),
    )
)
INSERT_TAG = insert(Tag).values(
    id=bindparam("id"), user_id=bindparam("user_id"), name=bindparam("name"),
    name_key=bindparam("name_key"), created_at=bindparam("created_at", type_=Tag.created_at.type),
)
INSERT_LINK = insert(task_tags)
DELETE_LINK = delete(task_tags).where(
    task_tags.c.task_id == bindparam("task_id"), task_tags.c.tag_id == bindparam("tag_id")
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
DELETE_TASK = (
    delete(Task)
    .where(Task.id == bindparam("task_id"), Task.user_id == bindparam("user_id"))
    .returning(Task.id)
)


@functools.cache
def update_task_statement(columns: tuple[str, ...]) -> Update:
    """UPDATE of these columns of one task (one statement per set of columns, built once).
    The WHERE parameter names cannot clash with a column's."""
    return (
        update(Task)
        .where(Task.id == bindparam("where_task_id"), Task.user_id == bindparam("where_user_id"))
        .values({name: bindparam(name, type_=Task.__table__.c[name].type) for name in columns})
    )


def lock_user(tx: Transaction, user_id: str) -> None:
    """Create the user's row on first write (idempotent under concurrency) and lock it until
    the transaction ends. It takes effect with the next statement."""
    tx.defer(LOCK_USER[tx.dialect.name], {"id": user_id, "created_at": utc_now()})


@dataclass
class Known:
    """What a transaction of several operations (a batch) knows of the user's data, so that
    its operations need not ask. The user's lock keeps it true: no one else writes the
    user's data until the transaction ends.

    - `task_count`: read once when a create first needs it; then one more for each create
      and one fewer for each delete (exact: the transaction ends at the first operation
      that fails, so every earlier one took effect);
    - `tags`: key -> (id, name) of tags known to exist, looked up or created by earlier
      operations; forgotten when an operation unlinks tags (the last unlink deletes a tag).
    """

    task_count: int | None = None
    tags: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def tasks(self, tx: Transaction, user_id: str) -> int:
        if self.task_count is None:
            self.task_count = int(tx.scalar(TASK_COUNT, {"user_id": user_id}))
        return self.task_count

    def existing_tags(self, tx: Transaction, user_id: str, keys: Collection[str]
                      ) -> dict[str, tuple[Any, str]]:
        """The tags among `keys` that exist (key -> (id, name)); a look-up for those not
        known yet."""
        unknown = [key for key in keys if key not in self.tags]
        if unknown:
            rows = tx.all(FIND_TAGS, {"user_id": user_id, "keys": unknown})
            self.tags.update({key: (tag_id, name) for tag_id, name, key in rows})
        return {key: self.tags[key] for key in keys if key in self.tags}

    def task_deleted(self) -> None:
        if self.task_count is not None:
            self.task_count -= 1
        self.tags.clear()


def _task_limit_reached(limit: int) -> ProblemError:
    return ProblemError(409, f"Task limit reached: a user can have at most {limit} tasks.")


def _not_found() -> ProblemError:
    return ProblemError(404, "Task not found.")


def _new_tags(
    tx: Transaction, user_id: str, wanted: Mapping[str, str], found: Collection[str],
    current_keys: Collection[str] = (),
) -> dict[str, Any]:
    """Create the tags of `wanted` (key -> name) whose keys are not `found`, unless that
    takes the user past the tag cap; their ids by key. The inserts are deferred."""
    missing = sorted(wanted.keys() - set(found))
    if not missing:
        return {}
    limit: int = current_app.config["MAX_TAGS_PER_USER"]
    kept = tx.scalar(COUNT_TAGS_KEPT, {"user_id": user_id, "keys": list(wanted),
                                       "current_keys": list(current_keys)})
    if kept + len(missing) > limit:
        raise ProblemError(
            409, f"Tag limit reached: a user can have at most {limit} distinct tags."
        )
    now = utc_now()
    created = {}
    for key in missing:
        created[key] = uuid.uuid4()
        tx.defer(INSERT_TAG, {"id": created[key], "user_id": user_id, "name": wanted[key],
                              "name_key": key, "created_at": now})
    return created


def create_task(user_id: str, fields: Mapping[str, Any]) -> TaskJSON:
    with writing() as tx:
        lock_user(tx, user_id)
        return create_in(tx, user_id, fields)


def update_task(
    user_id: str, task_id: uuid.UUID, changes: Mapping[str, Any], if_match: Any | None = None
) -> TaskJSON:
    with writing() as tx:
        lock_user(tx, user_id)
        return update_in(tx, user_id, task_id, changes, if_match)


def set_completion(user_id: str, task_id: uuid.UUID, completed: bool | None) -> TaskJSON:
    with writing() as tx:
        lock_user(tx, user_id)
        return complete_in(tx, user_id, task_id, completed)


def delete_task(user_id: str, task_id: uuid.UUID, if_match: Any | None = None) -> None:
    with writing() as tx:
        lock_user(tx, user_id)
        forget_expired_deletions(tx, user_id)
        delete_in(tx, user_id, task_id, if_match)


def forget_expired_deletions(tx: Transaction, user_id: str) -> None:
    """The user's tombstones older than SYNC_TOMBSTONE_DAYS go, as a deletion adds one (the
    user's row is locked anyway; deferred, so no round trip of their own). `flask purge`
    does the same for users who stopped deleting."""
    parameters = {"user_id": user_id,
                  "cutoff": tombstone_cutoff(current_app.config["SYNC_TOMBSTONE_DAYS"])}
    for statement in PURGE_USER:
        tx.defer(statement, parameters)


# ---------------------------------------------------------------- the operations
# Each runs in a transaction that holds the user's lock (`lock_user`) and returns what the
# endpoint answers, or raises a ProblemError (404, 409, 412): its changes are then undone
# with the transaction's.


def create_in(
    tx: Transaction, user_id: str, fields: Mapping[str, Any], known: Known | None = None
) -> TaskJSON:
    """Create a task from a create body (TaskCreateSchema)."""
    limit: int = current_app.config["MAX_TASKS_PER_USER"]
    now = utc_now()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        **{field.column.key: fields.get(field.name, field.default) for field in WRITABLE_FIELDS},
        "tag_names": [],
        "created_at": now,
        "updated_at": now,
    }
    wanted = {tag_key(name): name for name in fields.get("tags", [])}
    if known is not None:
        task_count, found = known.tasks(tx, user_id), known.existing_tags(tx, user_id, wanted)
    elif not wanted:  # one statement: it checks the limit itself
        row = tx.finish(INSERT_TASK_UNDER_LIMIT, {**values, "task_limit": limit})
        if row is None:
            raise _task_limit_reached(limit)
        return task_json(row)
    else:
        counted = tx.all(TASK_COUNT_AND_TAGS, {"user_id": user_id, "keys": list(wanted)})
        task_count = counted[0][0]
        found = {key: (tag_id, name) for _, tag_id, name, key in counted if tag_id is not None}
    if task_count >= limit:
        raise _task_limit_reached(limit)
    created = _new_tags(tx, user_id, wanted, found)
    if known is not None:
        known.task_count = task_count + 1
        known.tags.update({key: (tag_id, wanted[key]) for key, tag_id in created.items()})
    names = {key: name for key, (_, name) in found.items()} | {
        key: wanted[key] for key in created
    }
    values["tag_names"] = sort_tag_names(list(names.values()))
    tx.defer(INSERT_TASK, values)
    for tag_id in [tag_id for tag_id, _ in found.values()] + list(created.values()):
        tx.defer(INSERT_LINK, {"task_id": values["id"], "tag_id": tag_id})
    return task_json([values[column.key] for column in TASK_COLUMNS])


def update_in(
    tx: Transaction, user_id: str, task_id: uuid.UUID, changes: Mapping[str, Any],
    if_match: Any | None = None, known: Known | None = None,
) -> TaskJSON:
    """Apply any subset of fields (TaskUpdateSchema); `tags` replaces the set. Unchanged
    values are no change."""
    row = _task_to_change(tx, user_id, task_id)
    current = task_json(row)
    _check_if_match(current, if_match)
    stored = {
        field.column.key: changes[field.name]
        for field in WRITABLE_FIELDS
        if field.name in changes and _differs(current, field.name, changes[field.name])
    }
    if "tags" in changes:
        retagged = _retag(tx, user_id, task_id, current["tags"], changes["tags"])
        if retagged and known is not None:
            known.tags.clear()
        stored.update(retagged)
    if not stored:
        return current
    stored["updated_at"] = utc_now()
    tx.defer(
        update_task_statement(tuple(stored)),
        {**stored, "where_task_id": task_id, "where_user_id": user_id},
    )
    return task_json(
        [stored.get(column.key, value) for column, value in zip(TASK_COLUMNS, row, strict=True)]
    )


def complete_in(
    tx: Transaction, user_id: str, task_id: uuid.UUID, completed: bool | None
) -> TaskJSON:
    """Set `completed`, or flip it when `completed` is None: one statement."""
    row = tx.finish(SET_COMPLETION, {"task_id": task_id, "user_id": user_id,
                                     "completed": completed, "now": utc_now()})
    if row is None:
        raise _not_found()
    return task_json(row)


def delete_in(
    tx: Transaction, user_id: str, task_id: uuid.UUID, if_match: Any | None = None,
    known: Known | None = None,
) -> None:
    """Delete the task; its links go with it, and tags no other task uses with them."""
    if if_match is not None:
        _check_if_match(task_json(_task_to_change(tx, user_id, task_id)), if_match)
    deleted = tx.finish(DELETE_TASK, {"task_id": task_id, "user_id": user_id})
    if deleted is None:
        raise _not_found()
    if known is not None:
        known.task_deleted()


def _task_to_change(tx: Transaction, user_id: str, task_id: uuid.UUID) -> Row:
    """The task's row as it is (the user's lock keeps it so until the transaction ends)."""
    row = tx.first(GET_TASK, {"task_id": task_id, "user_id": user_id})
    if row is None:
        raise _not_found()
    return row


def _check_if_match(current: TaskJSON, if_match: Any | None) -> None:
    """`if_match` is werkzeug's parsed `If-Match` (None when the header is absent)."""
    if if_match is None:
        return
    if if_match.star_tag or if_match.contains(task_etag(current).strip('"')):
        return
    if not if_match.as_set():  # only weak tags (W/"..."): If-Match compares strongly
        raise ProblemError(412, 'If-Match holds only weak ETags (W/"..."), which never match: '
                           "send the task's ETag as the ETag header gives it.")
    raise ProblemError(
        412, "The task's ETag is not the one given (the task has changed since, or the ETag "
        "is another's); fetch the task again and retry."
    )


def _retag(
    tx: Transaction, user_id: str, task_id: uuid.UUID, current: list[str], names: list[str]
) -> dict[str, Any]:
    """Link the task to the tags `names` instead of `current` (deferred: only the links that
    change); the `tag_names` to store, or nothing when the set is the same."""
    current_keys = {tag_key(name) for name in current}
    wanted = {tag_key(name): name for name in names}
    if wanted.keys() == current_keys:
        return {}
    rows = tx.all(FIND_TAGS, {"user_id": user_id, "keys": list(wanted.keys() | current_keys)})
    found = {key: (tag_id, name) for tag_id, name, key in rows}
    created = _new_tags(tx, user_id, wanted, found, current_keys)
    for key in current_keys - wanted.keys():
        tx.defer(DELETE_LINK, {"task_id": task_id, "tag_id": found[key][0]})
    for key in wanted.keys() - current_keys:
        tag_id = created[key] if key in created else found[key][0]
        tx.defer(INSERT_LINK, {"task_id": task_id, "tag_id": tag_id})
    stored_names = [found[key][1] if key in found else wanted[key] for key in wanted]
    return {"tag_names": sort_tag_names(stored_names)}


def _differs(current: TaskJSON, name: str, value: Any) -> bool:
    shown = current[name]
    if isinstance(value, date):
        return bool(shown != value.isoformat())
    return bool(shown != value)
