"""flask-smorest configured for this contract: 400 (not 422), problem+json errors in the
responses and in the OpenAPI document, strict parsing of bodies and query strings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, NoReturn, TypeVar

import apispec
import flask_smorest
import marshmallow as ma
import orjson
from flask import Request
from flask_smorest.utils import prepare_response
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge

from todo.api.problems import PROBLEM_MIMETYPE
from todo.api.schemas import ProblemSchema

READ_ONLY_FIELDS = frozenset({"id", "user_id", "created_at", "updated_at"})


PARSED_QUERIES_KEPT = 4096
_MISSING = object()


class StrictParser(FlaskParser):
    """Rejects unknown or repeated query parameters and bad JSON with 400, and names
    read-only fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (schema, raw query string) -> what it parsed to; the values must be immutable.
        self._parsed_queries: dict[tuple[int, bytes], Any] = {}

    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
        "json": ma.RAISE,
    }

    def _raw_load_json(self, req: Request) -> Any:
        if not req.mimetype or not webargs_core.is_json(req.mimetype):
            return webargs_core.missing
        raw = req.get_data(cache=True)
        limit = req.max_content_length
        if req.content_length is None and limit is not None and len(raw) >= limit:
            # A chunked body has no length to check up front, and werkzeug stops reading it
            # at the limit without complaint; reaching the limit means it was too large.
            raise RequestEntityTooLarge()
        if not raw.strip():
            return webargs_core.missing
        try:
            # orjson bounds nesting depth, so a deeply nested body is a 400, not a RecursionError.
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            messages = {"json": {"_schema": ["Invalid JSON body."]}}
            raise flask_smorest.abort(400, messages=messages) from error

    def parse(self, argmap: Any, req: Request | None = None, *, location: str | None = None,
              **options: Any) -> Any:
        """Query arguments of schemas marked `PURE_QUERY = True` (their result depends on the
        query string alone) are parsed once per distinct query string: marshmallow's load
        was a fifth of a listing request's CPU, and clients repeat the same few queries."""
        if location != "query" or not getattr(argmap, "PURE_QUERY", False):
            return super().parse(argmap, req, location=location, **options)
        request_ = req if req is not None else self.get_default_request()
        key = (id(argmap), request_.query_string)
        parsed = self._parsed_queries.get(key, _MISSING)
        if parsed is _MISSING:
            parsed = super().parse(argmap, req, location=location, **options)
            if len(self._parsed_queries) >= PARSED_QUERIES_KEPT:
                self._parsed_queries.clear()  # a flood of distinct queries: start over
            self._parsed_queries[key] = parsed
        return parsed

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        # webargs would silently use the first of `limit=5&limit=500`; only lists may repeat.
        repeated = {
            field.data_key or name: ["Give this parameter at most once."]
            for name, field in schema.load_fields.items()
            if not isinstance(field, ma.fields.List)
            and len(req.args.getlist(field.data_key or name)) > 1
        }
        if repeated:
            raise ma.ValidationError(repeated)
        return super().load_querystring(req, schema)

    def _on_validation_error(
        self,
        error: ma.ValidationError,
        req: Request,
        schema: ma.Schema,
        location: str,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        if location == "json" and isinstance(error.messages, dict):
            for field in READ_ONLY_FIELDS & error.messages.keys():
                error.messages[field] = ["Read-only field; it cannot be set."]
        super()._on_validation_error(
            error,
            req,
            schema,
            location,
            error_status_code=error_status_code,
            error_headers=error_headers,
        )


F = TypeVar("F", bound=Callable[..., Any])


def _documentation_only(decorator: Callable[[F], F]) -> Callable[[F], F]:
    """Apply a flask-smorest decorator for the OpenAPI it records (`_apidoc`), without its
    call wrapper: `doc` and `alt_response` only pass the call through, and so does
    `response` when the view returns a `Response` (every view here does). Each wrapper
    layer costs a `current_app.ensure_sync` lookup on every request."""

    def apply(view: F) -> F:
        documented = decorator(view)
        view._apidoc = documented._apidoc  # type: ignore[attr-defined]
        return view

    return apply


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Blueprint with the strict parser, typed decorators for mypy, and
    documentation decorators that add no call layers (views must return a `Response`)."""

    ARGUMENTS_PARSER = StrictParser()

    def route(self, rule: str, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().route(rule, **options)
        return decorator

    def arguments(self, schema: Any, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().arguments(schema, **options)
        return decorator

    def response(
        self,
        status_code: int,
        schema: Any = None,
        *,
        links: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """flask-smorest's `response` documentation, plus the OpenAPI `links` of that
        response (which flask-smorest has no parameter for). The view builds the response
        itself; nothing here serialises it."""
        decorator: Callable[[F], F] = super().response(status_code, schema, **options)
        if links:
            document_links = self.doc(responses={status_code: {"links": dict(links)}})
            return lambda view: document_links(_documentation_only(decorator)(view))
        return _documentation_only(decorator)

    def alt_response(self, status_code: int, **options: Any) -> Callable[[F], F]:
        return _documentation_only(super().alt_response(status_code, **options))

    @staticmethod
    def doc(**kwargs: Any) -> Callable[[F], F]:
        return _documentation_only(flask_smorest.Blueprint.doc(**kwargs))


REQUEST_ID_HEADER = "X_REQUEST_ID"
RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
# Headers the service always sends with these errors.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer` when no token was sent, else `Bearer error="invalid_token", '
            'error_description="..."` (RFC 6750).',
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer"},
        }
    },
    405: {
        "Allow": {
            "description": "The methods this path accepts.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}


class RequestIdHeaderPlugin(apispec.BasePlugin):
    """Documents `X-Request-ID` on every response an operation declares inline (the shared
    error responses get it where they are registered)."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                if isinstance(response, dict):
                    response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER


class ProblemApi(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    """An `Api` whose errors are problem+json, both on the wire and in the document."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *, extra_plugins: Any = None, **options: Any) -> None:
        plugins = [*(extra_plugins or ()), RequestIdHeaderPlugin()]
        super()._init_spec(extra_plugins=plugins, **options)

    def _register_responses(self) -> None:
        self.spec.components.header(
            REQUEST_ID_HEADER,
            {
                "description": "The request's id: the client's `X-Request-ID` if it sent a sane "
                "one, else a new one. The service's log line of the request carries it too.",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            },
        )
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                prepare_response(response, self.spec, PROBLEM_MIMETYPE)
                response["headers"] = {
                    **ERROR_HEADERS.get(status, {}),
                    "X-Request-ID": REQUEST_ID_HEADER,
                }
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {
            "description": "Error",
            "schema": self.ERROR_SCHEMA,
            "headers": {"X-Request-ID": REQUEST_ID_HEADER},
        }
        prepare_response(default, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


def documents_errors(blueprint: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Document the problem+json error responses an operation can give."""

    def decorator(view: F) -> F:
        for status in statuses:
            view = blueprint.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorator
