"""HTTP view of the changes feed."""

from __future__ import annotations

import orjson
from flask import Response, current_app
from flask.views import MethodView

from todo.api.conditional import collection_etag, is_not_modified, not_modified
from todo.api.openapi import ETAG_HEADER, USER_ID_PARAMETER
from todo.api.problems import ProblemError
from todo.api.smorest import Blueprint, documents_errors
from todo.changes.cursor import decode_cursor, encode_cursor
from todo.changes.queries import read_changes
from todo.changes.schemas import ChangesArgs, ChangesArgsSchema, ChangesSchema
from todo.data.change_numbers import user_version
from todo.data.database import reading

blp = Blueprint(
    "changes", __name__, url_prefix="/api/<user_id>/changes",
    description="What changed in a user's tasks since a cursor, for clients that keep a copy.",
)


@blp.route("", parameters=[USER_ID_PARAMETER])
class Changes(MethodView):
    @blp.arguments(ChangesArgsSchema(), location="query")
    @blp.response(200, ChangesSchema, headers=ETAG_HEADER)
    @blp.doc(operationId="listChanges")
    @documents_errors(blp, 304, 400, 401, 403, 410, 429, 503)
    def get(self, args: ChangesArgs, user_id: str) -> Response:
        """Tasks changed and deleted since `cursor`, in the order the changes were made."""
        with reading() as reads:
            version = user_version(reads, user_id)
            after = None
            if args.cursor is not None:
                after = decode_cursor(user_id, args.cursor, version.change_number)
                if after < version.tombstones_purged_through:
                    raise ProblemError(
                        410,
                        "This cursor is older than the deletions kept; start again without "
                        "a cursor.",
                    )
            etag = collection_etag("changes", version.change_number)
            if is_not_modified(etag):
                return not_modified(etag)
            body, stands_at = read_changes(reads, user_id, after, version.change_number,
                                           args.limit)
        cursor = orjson.dumps(encode_cursor(user_id, stands_at))
        return current_app.response_class(
            body + b',"cursor":' + cursor + b"}", mimetype="application/json",
            headers={"ETag": etag},
        )
