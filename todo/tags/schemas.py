"""Schemas of the tags resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from todo.api.schemas import QueryInteger, Text
from todo.data.models import TAG_NAME_MAX


@dataclass(frozen=True)
class TagQueryArgs:
    q: str | None
    limit: int


class TagQueryArgsSchema(ma.Schema):
    PURE_QUERY = True  # parsed once per distinct query string (todo.api.smorest.StrictParser)

    q = Text(
        validate=validate.Length(max=TAG_NAME_MAX),
        metadata={"description": "Case-insensitive prefix of the tag name (autocomplete)."},
    )
    limit = QueryInteger(load_default=50, validate=validate.Range(1, 100))

    @ma.post_load
    def to_args(self, data: dict[str, Any], **kwargs: Any) -> TagQueryArgs:
        return TagQueryArgs(q=data.get("q"), limit=data["limit"])


class TagUsageSchema(ma.Schema):
    name = fields.String(required=True)
    usage_count = fields.Integer(required=True, metadata={"minimum": 1})
