"""A batch of task operations (`POST /api/{user_id}/tasks/batch`): all applied, in order, in
one transaction, or none.

The operations are the single endpoints' own (writes.py: `create_in`, `update_in`,
`complete_in`, `delete_in`), run one after another in one `writing()` transaction that takes
the user's lock once. Each sees what the ones before it did, so every per-user limit (tasks,
tags) counts as if they had been sent one by one. The first that fails ends the batch with
its own problem (404, 409, 412) naming it by index, and the transaction is rolled back.
They share what the transaction has learnt (`writes.Known`: the user's task count and
tags), so most creates send nothing until `COMMIT`.

The body was validated whole before anything runs (schemas.py, `BatchSchema`): each
operation's fields, and that each `"$ref"` names the `ref` of an earlier create.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, assert_never

from werkzeug.datastructures import ETags

from todo.api.problems import ProblemError
from todo.data.database import Transaction, writing
from todo.tasks import writes
from todo.tasks.representation import TaskJSON, task_etag


@dataclass(frozen=True)
class Ref:
    """`"$name"` as an operation's `id`: the task the create with `"ref": name` made."""

    name: str


TaskTarget = uuid.UUID | Ref


@dataclass(frozen=True)
class Create:
    op: ClassVar[str] = "create"
    fields: Mapping[str, Any]  # a create body (TaskCreateSchema)
    ref: str | None = None


@dataclass(frozen=True)
class Update:
    op: ClassVar[str] = "update"
    target: TaskTarget
    changes: Mapping[str, Any]  # a PATCH body (TaskUpdateSchema)
    if_match: ETags | None = None


@dataclass(frozen=True)
class Complete:
    op: ClassVar[str] = "complete"
    target: TaskTarget
    completed: bool | None = None  # None toggles


@dataclass(frozen=True)
class Delete:
    op: ClassVar[str] = "delete"
    target: TaskTarget
    if_match: ETags | None = None


Operation = Create | Update | Complete | Delete
# {"op", "id", "status", "task"?, "etag"?}: what the operation's own endpoint would answer.
Result = dict[str, Any]


def apply_batch(user_id: str, operations: Sequence[Operation]) -> list[Result]:
    """Apply `operations` in order, in one transaction; their results in the same order."""
    results: list[Result] = []
    with writing(many_operations=True) as tx:
        writes.lock_user(tx, user_id)
        made, known = _Refs(), writes.Known()
        for index, operation in enumerate(operations):
            try:
                results.append(_apply(tx, user_id, operation, made, known))
            except ProblemError as error:
                raise _failed(index, operation, error) from error
    return results


@dataclass
class _Refs:
    """The ids of the tasks this batch's creates with a `ref` have made so far."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def task_id(self, target: TaskTarget) -> uuid.UUID:
        # Validation made sure an earlier create has the ref; it ran, or the batch ended.
        return self.ids[target.name] if isinstance(target, Ref) else target


def _apply(
    tx: Transaction, user_id: str, operation: Operation, made: _Refs, known: writes.Known
) -> Result:
    match operation:
        case Create(fields=fields, ref=ref):
            task = writes.create_in(tx, user_id, fields, known)
            if ref is not None:
                made.ids[ref] = uuid.UUID(task["id"])
            return _with_task(operation, 201, task)
        case Update(target=target, changes=changes, if_match=if_match):
            task = writes.update_in(tx, user_id, made.task_id(target), changes, if_match,
                                    known)
            return _with_task(operation, 200, task)
        case Complete(target=target, completed=completed):
            task = writes.complete_in(tx, user_id, made.task_id(target), completed)
            return _with_task(operation, 200, task)
        case Delete(target=target, if_match=if_match):
            task_id = made.task_id(target)
            writes.delete_in(tx, user_id, task_id, if_match, known)
            return {"op": operation.op, "id": str(task_id), "status": 204}
        case _:
            assert_never(operation)


def _with_task(operation: Operation, status: int, task: TaskJSON) -> Result:
    return {"op": operation.op, "id": task["id"], "status": status, "task": task,
            "etag": task_etag(task)}


def _failed(index: int, operation: Operation, error: ProblemError) -> ProblemError:
    """The batch's answer when operation `index` fails: that operation's problem, named."""
    return ProblemError(
        error.status,
        f"Operation {index} ({operation.op}) failed, so none was applied: {error.detail}",
        errors={"operations": {str(index): [error.detail]}},
        headers=error.headers,
        title=error.title,
    )
