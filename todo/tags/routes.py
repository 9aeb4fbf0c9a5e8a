"""HTTP view of the tags resource (autocomplete for the frontend's tag input)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from todo.api.conditional import collection_etag, unchanged_collection
from todo.api.openapi import ETAG_HEADER, USER_ID_PARAMETER
from todo.api.responses import json_response
from todo.api.smorest import Blueprint, documents_errors
from todo.data.database import reading
from todo.tags.queries import tag_usage
from todo.tags.schemas import TagQueryArgs, TagQueryArgsSchema, TagUsageSchema

blp = Blueprint(
    "tags", __name__, url_prefix="/api/<user_id>/tags", description="A user's tags, with usage."
)


@blp.route("", parameters=[USER_ID_PARAMETER])
class Tags(MethodView):
    @blp.arguments(TagQueryArgsSchema(), location="query")
    @blp.response(200, TagUsageSchema(many=True), headers=ETAG_HEADER)
    @blp.doc(operationId="listTags")
    @documents_errors(blp, 304, 400, 401, 403, 429, 503)
    def get(self, args: TagQueryArgs, user_id: str) -> Response:
        """List the tags in use, most used first, optionally by name prefix."""
        with reading() as reads:
            # Tags change only with the tasks: the user's change number versions them.
            if (unchanged := unchanged_collection(reads, "tags", user_id)) is not None:
                return unchanged
            usage, change_number = tag_usage(reads, user_id, args.q, args.limit)
        return json_response(usage, headers={"ETag": collection_etag("tags", change_number)})
