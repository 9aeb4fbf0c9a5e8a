"""Schemas of the changes feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from todo.api.schemas import QueryInteger
from todo.tasks.representation import TaskSchema


@dataclass(frozen=True)
class ChangesArgs:
    cursor: str | None
    limit: int


class ChangesArgsSchema(ma.Schema):
    PURE_QUERY = True  # parsed once per distinct query string (todo.api.smorest.StrictParser)

    cursor = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "The `cursor` of an earlier answer; without it, from the "
                  "beginning (every current task, no deletions)."},
    )
    limit = QueryInteger(load_default=100, validate=validate.Range(1, 500))

    @ma.post_load
    def to_args(self, data: dict[str, Any], **kwargs: Any) -> ChangesArgs:
        return ChangesArgs(cursor=data.get("cursor"), limit=data["limit"])


class DeletedTaskSchema(ma.Schema):
    id = fields.UUID(required=True)
    deleted_at = fields.DateTime(required=True)


class ChangesSchema(ma.Schema):
    tasks = fields.List(fields.Nested(TaskSchema), required=True, metadata={
        "description": "Tasks created or changed since the cursor, each once, as they are now."
    })
    deleted = fields.List(fields.Nested(DeletedTaskSchema), required=True, metadata={
        "description": "Tasks deleted since the cursor."
    })
    cursor = fields.String(required=True, metadata={
        "description": "Send it back as `cursor` for what changes next."
    })
    has_more = fields.Boolean(required=True, metadata={
        "description": "More changes are waiting: ask again with `cursor` at once."
    })
