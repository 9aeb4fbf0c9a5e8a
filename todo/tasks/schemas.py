"""Request and response schemas of the tasks resource (validation and OpenAPI only)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from todo.api.problems import ProblemError
from todo.api.schemas import (
    BodySchema,
    CaseInsensitiveChoice,
    IfMatch,
    IsoDate,
    OneOf,
    QueryInteger,
    StrictBoolean,
    Text,
    TrimmedString,
)
from todo.api.smorest import name_read_only_fields
from todo.data.models import DESCRIPTION_MAX, TAG_NAME_MAX, TITLE_MAX, Priority, tag_key
from todo.tasks.batch import Complete, Create, Delete, Operation, Ref, TaskTarget, Update
from todo.tasks.listing import TaskListArgs
from todo.tasks.representation import TaskSchema
from todo.tasks.stats import TaskStatsArgs

PRIORITIES = tuple(p.value for p in Priority)
MAX_TAGS_PER_TASK = 20
# A bound on the raw list, before duplicates collapse, so a body cannot carry thousands.
MAX_TAG_ITEMS = 100
MAX_TAG_FILTERS = 50
MAX_OFFSET = 1_000_000_000


class TagNames(fields.List[str]):
    """Tag names: trimmed, 1-50 characters, duplicates collapsed case-insensitively (the
    first spelling kept), at most 20 after that."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            TrimmedString(TAG_NAME_MAX),
            validate=validate.Length(max=MAX_TAG_ITEMS),
            metadata={
                "description": f"Tag names, each 1-{TAG_NAME_MAX} characters after trimming; "
                f"duplicates collapse case-insensitively; at most {MAX_TAGS_PER_TASK} distinct. "
                f"A list of up to {MAX_TAG_ITEMS} items is accepted if its duplicates collapse "
                f"to {MAX_TAGS_PER_TASK} or fewer names.",
                # JSON Schema cannot count case-insensitively distinct items; the document
                # promises what is always accepted (the validator's bound is the raw 100).
                "maxItems": MAX_TAGS_PER_TASK,
            },
            **kwargs,
        )

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[str | None]:
        names = super()._deserialize(value, attr, data, **kwargs)
        unique: dict[str, str | None] = {}
        for name in names:
            assert name is not None  # items are non-nullable strings
            unique.setdefault(tag_key(name), name)
        if len(unique) > MAX_TAGS_PER_TASK:
            raise ma.ValidationError(f"At most {MAX_TAGS_PER_TASK} distinct tags per task.")
        return list(unique.values())


def _title(required: bool) -> TrimmedString:
    return TrimmedString(
        TITLE_MAX,
        length_error="Must be 1-200 characters after trimming.",
        required=required,
        metadata={
            "description": "1-200 characters; surrounding whitespace is removed.",
            "example": "Buy milk",
        },
    )


class TaskCreateSchema(BodySchema):
    title = _title(required=True)
    description = Text(
        allow_none=True,
        validate=validate.Length(max=DESCRIPTION_MAX),
        metadata={"example": "2 litres"},
    )
    priority = CaseInsensitiveChoice(
        PRIORITIES, metadata={"description": "High, Medium or Low (any case). Default Medium."}
    )
    due_date = IsoDate(allow_none=True, metadata={"example": "2026-12-01"})
    tags = TagNames()


class TaskUpdateSchema(TaskCreateSchema):
    """PUT and PATCH: any subset of the fields; `null` clears description and due date."""

    title = _title(required=False)
    completed = StrictBoolean()


class TaskCompletionSchema(BodySchema):
    """Optional body of `PATCH .../complete`: without it the flag toggles."""

    completed = StrictBoolean()


class TaskPageSchema(ma.Schema):
    """One page of a listing and the number of all matching tasks."""

    data = fields.List(fields.Nested(TaskSchema), required=True)
    total = fields.Integer(required=True, metadata={"minimum": 0})
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class TagFilter(fields.List[str]):
    """A repeatable query parameter of tag names."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            TrimmedString(TAG_NAME_MAX),
            validate=validate.Length(max=MAX_TAG_FILTERS),
            **kwargs,
        )


class TaskFilterArgsSchema(ma.Schema):
    """The listing's filters, as query parameters: the list's and the counts' (`/stats`).
    Unknown and repeated single-valued parameters are rejected (by
    `todo.api.smorest.StrictParser`)."""

    PURE_QUERY = True  # parsed once per distinct query string (todo.api.smorest.StrictParser)

    search = Text(
        validate=validate.Length(max=200),
        metadata={"description": "Case-insensitive substring of title or description; "
                  "`%`, `_` and `\\` match literally."},
    )
    priority = CaseInsensitiveChoice(
        ("all", *PRIORITIES),
        load_default="all",
        metadata={"description": "all, High, Medium or Low (any case)."},
    )
    tags = TagFilter(
        metadata={"description": "Repeatable; tasks having any (or, with tag_mode=all, every) "
                  "named tag, case-insensitively. `tags[]` is accepted as the same."}
    )
    # Accepted, not documented as a parameter of its own (`tags` says so).
    tags_brackets = TagFilter(data_key="tags[]", metadata={"x-alias-of": "tags"})
    tag_mode = fields.String(load_default="any", validate=validate.OneOf(("any", "all")))
    due_from = IsoDate(metadata={"description": "Inclusive lower bound on due_date."})
    due_to = IsoDate(metadata={"description": "Inclusive upper bound on due_date."})


def list_args(data: dict[str, Any]) -> TaskListArgs:
    """The loaded parameters as `TaskListArgs` (those not given keep their defaults)."""
    tags = (*data.pop("tags", []), *data.pop("tags_brackets", []))
    if data.get("priority") == "all":
        data["priority"] = None
    return TaskListArgs(tags=tags, search=data.pop("search", None) or None, **data)


class TaskQueryArgsSchema(TaskFilterArgsSchema):
    """Query parameters of the listing: the filters, status, order and page."""

    status = fields.String(
        load_default="all", validate=validate.OneOf(("all", "pending", "completed"))
    )
    sort_by = fields.String(
        load_default="created_at",
        validate=validate.OneOf(("created_at", "updated_at", "title", "due_date", "priority")),
    )
    sort_direction = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
    limit = QueryInteger(load_default=50, validate=validate.Range(1, 100))
    offset = QueryInteger(load_default=0, validate=validate.Range(0, MAX_OFFSET))

    @ma.post_load
    def to_list_args(self, data: dict[str, Any], **kwargs: Any) -> TaskListArgs:
        return list_args(data)


# ---------------------------------------------------------------- the batch

UUID_PATTERN = "[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
UUID_TEXT = re.compile(UUID_PATTERN)
# A create's `ref`: visible ASCII, like an HTTP token; `"$" + ref` is a later operation's id.
REF_PATTERN = "[!-~]{1,100}"
REF_TEXT = re.compile(REF_PATTERN)
TASK_TARGET_TEXT = re.compile(rf"{UUID_PATTERN}|\${REF_PATTERN}")
MAX_BATCH_OPERATIONS = 100


class TaskBody(fields.Nested):
    """A task body inside a batch operation, validated as the endpoint's own body is (a
    read-only field is named as such)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, partial: Any = None,
                     **kwargs: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ma.ValidationError(
                'Must be a JSON object of task fields, e.g. {"title": "Buy milk"}.'
            )
        try:
            return super()._deserialize(value, attr, data, partial, **kwargs)
        except ma.ValidationError as error:
            if isinstance(error.messages, dict):
                name_read_only_fields(error.messages)
            raise


class TaskTargetField(fields.Field[TaskTarget]):
    """An operation's `id`: the task's UUID, or `"$" + ref` for the task an earlier create
    of the same batch made."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=True, metadata={
            "type": "string",
            "pattern": f"^({TASK_TARGET_TEXT.pattern})$",
            "description": "The task's UUID, or `$` and the `ref` of an earlier create in "
            "this batch (e.g. `$tmp-1`).",
            "example": "5b9a4a8e-3f0c-4d7e-9a57-2f1c6e0b8d41",
        }, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any
                     ) -> TaskTarget:
        if not isinstance(value, str) or not TASK_TARGET_TEXT.fullmatch(value):
            raise ma.ValidationError(
                'Must be a task\'s UUID, or "$" and the ref of an earlier create, e.g. "$tmp-1".'
            )
        return Ref(value[1:]) if value.startswith("$") else uuid.UUID(value)


def _op(name: str) -> fields.String:
    return fields.String(required=True, validate=validate.Equal(name))


def _valid_ref(value: str) -> None:
    if not REF_TEXT.fullmatch(value):  # validate.Regexp would accept a valid prefix
        raise ma.ValidationError("Must be 1-100 visible ASCII characters.")


def _if_match() -> IfMatch:
    return IfMatch(metadata={
        "description": "Apply the operation only if the task's ETag matches (else the batch "
        "fails with 412), as the `If-Match` header does: `*` or quoted ETags.",
        "example": '"3f2a9c0e5d1b4a7e8c6f0a2b4d6e8f10"',
    })


class CreateOperationSchema(BodySchema):
    """Create a task; `ref` names it for later operations of the batch (`"$" + ref`)."""

    op = _op("create")
    ref = fields.String(validate=_valid_ref, metadata={
        "pattern": f"^{REF_PATTERN}$", "example": "tmp-1",
        "description": "A name for the new task that later operations of this batch give as "
        "their `id`, after a `$`.",
    })
    task = TaskBody(TaskCreateSchema, required=True)

    @ma.post_load
    def to_operation(self, data: dict[str, Any], **kwargs: Any) -> Create:
        return Create(data["task"], data.get("ref"))


class UpdateOperationSchema(BodySchema):
    """Update a task: `task` is a PATCH body."""

    op = _op("update")
    id = TaskTargetField()
    task = TaskBody(TaskUpdateSchema, required=True)
    if_match = _if_match()

    @ma.post_load
    def to_operation(self, data: dict[str, Any], **kwargs: Any) -> Update:
        return Update(data["id"], data["task"], data.get("if_match"))


class CompleteOperationSchema(BodySchema):
    """Set `completed`, or toggle it when `completed` is left out."""

    op = _op("complete")
    id = TaskTargetField()
    completed = StrictBoolean()

    @ma.post_load
    def to_operation(self, data: dict[str, Any], **kwargs: Any) -> Complete:
        return Complete(data["id"], data.get("completed"))


class DeleteOperationSchema(BodySchema):
    """Delete a task."""

    op = _op("delete")
    id = TaskTargetField()
    if_match = _if_match()

    @ma.post_load
    def to_operation(self, data: dict[str, Any], **kwargs: Any) -> Delete:
        return Delete(data["id"], data.get("if_match"))


OPERATION_EXAMPLE = '{"op": "create", "ref": "tmp-1", "task": {"title": "Buy milk"}}'


class Operations(fields.List[Operation]):
    """1-100 operations, each one of the four; a `"$" + ref` id must name the `ref` of an
    earlier create, and two creates may not share a ref."""

    def __init__(self, **kwargs: Any) -> None:
        operation = OneOf("op", {
            "create": CreateOperationSchema(),
            "update": UpdateOperationSchema(),
            "complete": CompleteOperationSchema(),
            "delete": DeleteOperationSchema(),
        }, example=OPERATION_EXAMPLE)
        super().__init__(operation, validate=validate.Length(1, MAX_BATCH_OPERATIONS),
                         metadata={"example": [
                             {"op": "create", "ref": "tmp-1",
                              "task": {"title": "Buy milk", "tags": ["errands"]}},
                             {"op": "complete", "id": "$tmp-1", "completed": True},
                         ]}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any
                     ) -> list[Operation | None]:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_BATCH_OPERATIONS:
            raise ma.ValidationError(
                f"Send 1-{MAX_BATCH_OPERATIONS} operations (split a longer batch)."
            )
        errors = _ref_errors(value) if isinstance(value, list) else {}
        try:
            operations = super()._deserialize(value, attr, data, **kwargs)
        except ma.ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            errors = _merged(error.messages, errors)
        if errors:
            raise ma.ValidationError(dict(sorted(errors.items())))
        return operations


def _ref_errors(items: list[Any]) -> dict[int, dict[str, list[str]]]:
    """By operation index: a `ref` an earlier create already has, and a `"$" + ref` id that
    names no earlier create's ref (a later one's, or none)."""
    defined: dict[str, int] = {}  # ref -> the first create that names it
    for index, item in enumerate(items):
        if isinstance(item, Mapping) and item.get("op") == "create":
            ref = item.get("ref")
            if isinstance(ref, str):
                defined.setdefault(ref, index)
    errors: dict[int, dict[str, list[str]]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        ref = item.get("ref")
        if item.get("op") == "create" and isinstance(ref, str) and defined[ref] != index:
            errors[index] = {"ref": [f'Operation {defined[ref]} already has ref "{ref}"; '
                                     "each create needs a ref of its own."]}
        target = item.get("id")
        if not (isinstance(target, str) and target.startswith("$")):
            continue
        name = target[1:]
        if name not in defined:
            message = f'No create in this batch has ref "{name}".'
        elif defined[name] >= index:
            message = (f'"{target}" is the ref of operation {defined[name]}, which comes '
                       "later: an operation can only use the ref of an earlier create.")
        else:
            continue
        errors.setdefault(index, {})["id"] = [message]
    return errors


def _merged(errors: Mapping[int, Any], ref_errors: Mapping[int, dict[str, list[str]]]
            ) -> dict[int, Any]:
    """Each operation's own errors, and its ref errors for the fields that have none."""
    merged = dict(errors)
    for index, messages in ref_errors.items():
        own = merged.get(index, {})
        merged[index] = {**messages, **own} if isinstance(own, dict) else own
    return merged


class BatchSchema(BodySchema):
    """`{"operations": [...]}`. A failed validation is a 400 naming each invalid operation by
    index, in the `errors` the contract gives a failed operation (`{"operations": {"3":
    ["..."]}}`), besides `errors.json` as for any body."""

    error_messages = {"type": 'The body must be a JSON object: {"operations": [...]}.'}

    operations = Operations(required=True)

    @ma.post_load
    def to_operations(self, data: dict[str, Any], **kwargs: Any) -> list[Operation]:
        operations: list[Operation] = data["operations"]
        return operations

    def handle_error(self, error: ma.ValidationError, data: Any, *, many: bool,
                     **kwargs: Any) -> None:
        messages = error.messages
        by_operation = messages.get("operations") if isinstance(messages, dict) else None
        if not isinstance(by_operation, dict):
            return  # not about single operations: webargs answers as for any body
        failed = {str(index): _flat(operation_errors)
                  for index, operation_errors in by_operation.items()}
        detail = "; ".join(
            f"operation {index}: " + "; ".join(line.rstrip(".") for line in lines)
            for index, lines in failed.items()
        )
        raise ProblemError(
            400,
            f"Validation failed, so no operation was applied: {detail}.",
            errors={"operations": failed,
                    "json": _string_keys(messages)},
        )


def _flat(messages: Any, path: str = "") -> list[str]:
    """`{"task": {"title": ["Too long."]}}` -> `["task.title: Too long."]`."""
    if isinstance(messages, Mapping):
        return [line for key, value in messages.items()
                for line in _flat(value, path if key == "_schema" else
                                  f"{path}.{key}" if path else str(key))]
    if isinstance(messages, list):
        return [line for message in messages for line in _flat(message, path)]
    return [f"{path}: {messages}" if path else str(messages)]


def _string_keys(messages: Any) -> Any:
    if isinstance(messages, Mapping):
        return {str(key): _string_keys(value) for key, value in messages.items()}
    return messages


class BatchResultSchema(ma.Schema):
    """What the operation's own endpoint would have answered."""

    op = fields.String(required=True, validate=validate.OneOf(
        ("create", "update", "complete", "delete")))
    id = fields.UUID(required=True, metadata={
        "description": "The task's id (also for operations that named it by `$ref`)."})
    status = fields.Integer(required=True, validate=validate.OneOf((201, 200, 204)), metadata={
        "description": "201 create, 200 update and complete, 204 delete."})
    task = fields.Nested(TaskSchema, metadata={
        "description": "The task after this operation (create, update, complete)."})
    etag = fields.String(metadata={
        "pattern": '^"[^"]+"$', "description": "The task's ETag after this operation, as "
        "`GET` gives it (create, update, complete)."})


class BatchResultsSchema(ma.Schema):
    """The results of the operations, in request order."""

    results = fields.List(fields.Nested(BatchResultSchema), required=True)


class TaskStatsQueryArgsSchema(TaskFilterArgsSchema):
    """Query parameters of the counts: the listing's filters (not its status, order or
    page: those are unknown parameters here) and the client's date."""

    today = IsoDate(
        metadata={"description": "The client's local date, for `overdue` and `due_today`. "
                  "Default: the UTC date."}
    )

    @ma.post_load
    def to_stats_args(self, data: dict[str, Any], **kwargs: Any) -> TaskStatsArgs:
        today = data.pop("today", None)
        return TaskStatsArgs(filters=list_args(data), today=today)


def _count(description: str) -> fields.Integer:
    return fields.Integer(
        required=True, metadata={"minimum": 0, "description": description}
    )


# Keys are the priorities as the API writes them.
PriorityCountsSchema = ma.Schema.from_dict(
    {priority: _count(f"Pending tasks of priority {priority}.") for priority in PRIORITIES},
    name="PriorityCounts",
)


class TaskStatsSchema(ma.Schema):
    """Counts of the tasks matching the filters."""

    total = _count("Tasks matching the filters.")
    pending = _count("Of those, not completed.")
    completed = _count("Of those, completed.")
    overdue = _count("Pending, with a due date before `today`.")
    due_today = _count("Pending, due on `today`.")
    by_priority = fields.Nested(PriorityCountsSchema, required=True)
