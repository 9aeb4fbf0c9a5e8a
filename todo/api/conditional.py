"""Conditional reads: `ETag` on what a GET returns, and 304 for an `If-None-Match` that
holds the current one (RFC 9110: weak comparison, `*` matches anything that exists)."""

from __future__ import annotations

import hashlib

from flask import Response, current_app, request

from todo.data.change_numbers import user_version
from todo.data.database import Reads


def collection_etag(kind: str, change_number: int) -> str:
    """The validator of a collection read (list, tags, stats, changes): the user's change
    number, which moves with every write of theirs, and the query string, which chooses what
    is read. `kind` keeps the validators of different endpoints apart."""
    query = hashlib.sha256(request.query_string).hexdigest()[:16]
    return f'"{kind}.{change_number}.{query}"'


def is_not_modified(etag: str) -> bool:
    """Whether the request's `If-None-Match` holds `etag` (or `*`)."""
    if "If-None-Match" not in request.headers:
        return False
    condition = request.if_none_match
    return bool(condition.star_tag or condition.contains_weak(etag.strip('"')))


def not_modified(etag: str) -> Response:
    """304: no body and no `Content-Type`, the validator again."""
    response = current_app.response_class(status=304, headers={"ETag": etag})
    del response.headers["Content-Type"]
    return response


def unchanged_collection(reads: Reads, kind: str, user_id: str) -> Response | None:
    """A poll of a collection (`If-None-Match`) answered from the user's change number
    alone: the 304, or None when the collection must be read (changed, or no condition)."""
    if "If-None-Match" not in request.headers:
        return None
    etag = collection_etag(kind, user_version(reads, user_id).change_number)
    return not_modified(etag) if is_not_modified(etag) else None
