"""Answers the server gives before the application sees a request (a malformed request line,
a head too large, a request that never finished arriving): problem+json like every other
error of this API, with an `X-Request-ID`, and `Connection: close`."""

from __future__ import annotations

import uuid
from email.utils import formatdate
from http import HTTPStatus

import orjson
from gunicorn.http import errors as http_errors

from todo.api.problems import PROBLEM_MIMETYPE, problem_body

# gunicorn's parse errors, most specific first, and the status each is answered with.
PARSE_ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.ExpectationFailed, 417),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ForbiddenProxyRequest, 403),
    (http_errors.ConfigurationProblem, 500),
    (http_errors.InvalidRequestLine, 400),
    (http_errors.InvalidRequestMethod, 400),
    (http_errors.InvalidHTTPVersion, 400),
    (http_errors.InvalidHeader, 400),
    (http_errors.InvalidHeaderName, 400),
    (http_errors.InvalidProxyLine, 400),
    (http_errors.InvalidSchemeHeaders, 400),
    (http_errors.ObsoleteFolding, 400),
    (http_errors.InvalidChunkSize, 400),
    (http_errors.ChunkMissingTerminator, 400),
    (http_errors.InvalidChunkExtension, 400),
)
DETAILS = {
    400: "The request is not valid HTTP/1.1: {reason}.",
    403: "The request was refused: {reason}.",
    408: "The request did not arrive in time; send it again.",
    413: "The request body is too large; the limit is {limit} bytes.",
    414: "The request line is too long; the limit is {limit} bytes.",
    417: "Only `Expect: 100-continue` is supported.",
    431: "The request's header fields are too large; the limit is {limit} bytes in all.",
    500: "The server could not handle the request; it has been logged.",
    501: "Only the chunked transfer coding is supported.",
}


def status_of_parse_error(error: Exception) -> int:
    """The status answering one of gunicorn's parse errors (500 for anything else)."""
    for error_class, status in PARSE_ERROR_STATUS:
        if isinstance(error, error_class):
            return status
    return 500


def refusal(status: int, *, reason: str = "", limit: int = 0) -> tuple[bytes, str]:
    """A complete HTTP/1.1 response, a problem document with `status` that ends the
    connection, and its request id (a new one: the request's own header was never read)."""
    request_id = uuid.uuid4().hex
    detail = DETAILS[status].format(reason=reason.rstrip(".") or "malformed", limit=limit)
    body = orjson.dumps(problem_body(status, detail))
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_MIMETYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Cache-Control: no-store\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body, request_id
