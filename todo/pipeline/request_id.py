"""`X-Request-ID`: kept from the client when sane, else generated; echoed on every response."""

from __future__ import annotations

import re
import uuid

from flask import Response, g, request

HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def assign_request_id() -> None:
    offered = request.headers.get(HEADER, "")
    g.request_id = offered if SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


def echo_request_id(response: Response) -> Response:
    if "request_id" not in g:  # a failure before the first hook ran
        assign_request_id()
    response.headers[HEADER] = g.request_id
    return response

