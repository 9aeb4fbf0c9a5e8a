"""Schemas of the tags resource."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from todo.models import TAG_NAME_MAX
from todo.schemas import QueryInteger, Text


class TagQueryArgsSchema(ma.Schema):
    q = Text(
        validate=validate.Length(max=TAG_NAME_MAX),
        metadata={"description": "Case-insensitive prefix of the tag name (autocomplete)."},
    )
    limit = QueryInteger(load_default=50, validate=validate.Range(1, 100))


class TagUsageSchema(ma.Schema):
    name = fields.String(required=True)
    usage_count = fields.Integer(required=True, metadata={"minimum": 1})
