"""HTTP views of the user's own data as a whole (API.md, "The user's own data")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from marshmallow import fields

from todo.account.erasure import erase_user
from todo.account.export import export_response
from todo.api.openapi import USER_ID_PARAMETER
from todo.api.problems import ProblemError
from todo.api.responses import no_content
from todo.api.smorest import Blueprint, documents_errors
from todo.tags.schemas import TagUsageSchema
from todo.tasks.representation import TaskSchema

blp = Blueprint(
    "account", __name__, url_prefix="/api/<user_id>", description="The user's own data."
)

CONTENT_DISPOSITION_HEADER: dict[str, Any] = {
    "Content-Disposition": {
        "description": 'A download: `attachment; filename="todo-export-<user_id>.json"` (the '
        "id's characters other than ASCII letters, digits, `.`, `_` and `-` replaced by `_`; "
        "an id with other letters adds `filename*` with them).",
        "required": True,
        "schema": {"type": "string", "pattern": "^attachment; "},
    }
}


class NoQueryArgsSchema(ma.Schema):
    """No query parameters: any is an unknown one (400), as everywhere in the API."""

    PURE_QUERY = True  # parsed once per distinct query string (todo.api.smorest.StrictParser)


class ExportSchema(ma.Schema):
    """Everything of the user: every task (completed ones too) and every tag."""

    user_id = fields.String(required=True)
    exported_at = fields.DateTime(
        required=True, metadata={"description": "When the export started (UTC)."}
    )
    tasks = fields.List(
        fields.Nested(TaskSchema),
        required=True,
        metadata={"description": "Every task, newest first (the listing's default order)."},
    )
    tags = fields.List(
        fields.Nested(TagUsageSchema),
        required=True,
        metadata={"description": "Every tag, most used first (as `GET /tags` orders them)."},
    )


@blp.route("/export", parameters=[USER_ID_PARAMETER])
class Export(MethodView):
    @blp.arguments(NoQueryArgsSchema(), location="query")
    @blp.response(200, ExportSchema, headers=CONTENT_DISPOSITION_HEADER)
    @blp.doc(operationId="exportAccount")
    @documents_errors(blp, 400, 401, 403, 429, 503)
    def get(self, args: dict[str, Any], user_id: str) -> Response:
        """Download every task and tag of the user as one JSON document (streamed)."""
        return export_response(user_id)


@dataclass(frozen=True)
class ErasureArgs:
    confirm: str


class ErasureArgsSchema(ma.Schema):
    PURE_QUERY = True  # parsed once per distinct query string (todo.api.smorest.StrictParser)

    confirm = fields.String(
        required=True,
        metadata={"description": "The user's id again, to confirm the erasure."},
    )

    @ma.post_load
    def to_args(self, data: dict[str, Any], **kwargs: Any) -> ErasureArgs:
        return ErasureArgs(**data)


@blp.route("", parameters=[USER_ID_PARAMETER])
class Account(MethodView):
    @blp.arguments(ErasureArgsSchema(), location="query")
    @blp.response(204)
    @blp.doc(operationId="eraseAccount")
    @documents_errors(blp, 400, 401, 403, 429, 503)
    def delete(self, args: ErasureArgs, user_id: str) -> Response:
        """Erase the user and everything of theirs: tasks, tags, deletions kept for the
        changes feed, kept idempotent responses. `confirm` must be the user's id. The same
        token then sees an empty account."""
        if args.confirm != user_id:
            raise ProblemError(
                400,
                "To erase this account, send `confirm` equal to its user id.",
                errors={"query": {"confirm": ["Must equal the user id in the path."]}},
            )
        erase_user(user_id)
        return no_content()
