"""Request and response schemas of the tasks resource (validation and OpenAPI only)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from todo.api.schemas import (
    BodySchema,
    CaseInsensitiveChoice,
    IsoDate,
    QueryInteger,
    StrictBoolean,
    Text,
    TrimmedString,
)
from todo.data.models import DESCRIPTION_MAX, TAG_NAME_MAX, TITLE_MAX, Priority, tag_key
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
