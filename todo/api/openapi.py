"""OpenAPI pieces the resources share: path parameters and headers."""

from __future__ import annotations

from typing import Any

USER_ID_PARAMETER: dict[str, Any] = {
    "in": "path",
    "name": "user_id",
    "required": True,
    "description": "The Better Auth user id; must equal the token's `sub`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
ETAG_HEADER: dict[str, Any] = {
    "ETag": {
        "description": "Strong validator of this representation; send it back in `If-Match`.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[^"]+"$'},
    }
}
IF_MATCH_PARAMETER: dict[str, Any] = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "Apply the write only if the resource's current ETag matches (else 412); "
    "`*` matches any existing one.",
    "schema": {"type": "string"},
    "example": "*",
}
IF_NONE_MATCH_PARAMETER: dict[str, Any] = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "description": "The ETag of an earlier answer: 304 with no body while it is still current.",
    "schema": {"type": "string"},
}
