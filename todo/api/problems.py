"""RFC 7807 / RFC 9457 problem details: the one shape every error response takes."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from flask import Response, current_app, has_request_context, request

PROBLEM_MIMETYPE = "application/problem+json"


class ProblemError(Exception):
    """Raised anywhere in request handling to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.title = title


def problem_body(
    status: int,
    detail: str,
    *,
    errors: Mapping[str, Any] | None = None,
    title: str | None = None,
    instance: str | None = None,
) -> dict[str, Any]:
    """The problem document: the shape of every error body, from the app or the server."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Response:
    body = problem_body(
        status,
        detail,
        errors=errors,
        title=title,
        instance=request.path if has_request_context() else None,
    )
    response = current_app.response_class(
        orjson.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE
    )
    if headers:
        response.headers.update(headers)
    return response


def validation_detail(errors: Mapping[str, Any]) -> str:
    """One readable sentence naming every field that failed, e.g. for `detail`."""
    parts: list[str] = []
    for location, fields in errors.items():
        if not isinstance(fields, Mapping):
            parts.append(f"{location}: {_first_message(fields).rstrip('.')}")
            continue
        for field, messages in fields.items():
            name = location if field == "_schema" else f"{field}"
            parts.append(f"{name}: {_first_message(messages).rstrip('.')}")
    return f"Validation failed: {'; '.join(parts)}." if parts else "Validation failed."


def _first_message(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, Mapping):
        key, value = next(iter(messages.items()))
        return f"[{key}] {_first_message(value)}"
    if isinstance(messages, list | tuple) and messages:
        return _first_message(messages[0])
    return "invalid value"
