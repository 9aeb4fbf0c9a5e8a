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
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Request
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import RequestEntityTooLarge

from todo.api.openapi import IF_NONE_MATCH_PARAMETER
from todo.api.problems import PROBLEM_MIMETYPE
from todo.api.schemas import OneOf, ProblemSchema

READ_ONLY_FIELDS = frozenset({"id", "user_id", "created_at", "updated_at"})


def name_read_only_fields(body_errors: dict[str, Any]) -> None:
    """A task body's errors: a read-only field it sent is named as such, not as unknown."""
    for field in READ_ONLY_FIELDS & body_errors.keys():
        body_errors[field] = ["Read-only field; it cannot be set."]


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

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """The JSON body, parsed by orjson, or `missing` for none (webargs' location loader,
        replaced whole: webargs' own reads through hooks it calls internal)."""
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

    def handle_error(
        self,
        error: ma.ValidationError,
        req: Request,
        schema: ma.Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        """webargs' error handler: the messages are keyed by location (`{"json": {...}}`);
        a read-only field sent in a body is named as such, not as an unknown field."""
        body_errors = error.messages.get("json") if isinstance(error.messages, dict) else None
        if isinstance(body_errors, dict):
            name_read_only_fields(body_errors)
        super().handle_error(
            error, req, schema, error_status_code=error_status_code, error_headers=error_headers
        )


F = TypeVar("F", bound=Callable[..., Any])


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Blueprint with the strict parser, typed decorators for mypy, and
    OpenAPI `links` on a response.

    `response` is flask-smorest's: a view that returns data has it serialised by the schema
    (the cold endpoints: health). The hot ones build their `Response` themselves (orjson; a
    list page is JSON written by PostgreSQL), which flask-smorest passes through as it is:
    for them the schema documents what they send (tests/test_openapi.py and schemathesis
    check that it does)."""

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
        """flask-smorest's `response`, plus the OpenAPI `links` of that response (which
        flask-smorest has no parameter for)."""
        decorator: Callable[[F], F] = super().response(status_code, schema, **options)
        if not links:
            return decorator
        document_links = self.doc(responses={status_code: {"links": dict(links)}})
        return lambda view: document_links(decorator(view))

    def alt_response(self, status_code: int, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().alt_response(status_code, **options)
        return decorator

    @staticmethod
    def doc(**kwargs: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = flask_smorest.Blueprint.doc(**kwargs)
        return decorator


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


IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Makes retrying this request safe: the first request with a key runs, and "
    "its success response is kept for `IDEMPOTENCY_TTL_HOURS` (default 24); the same request "
    "again with the key gets that response (with `Idempotent-Replayed: true`) and runs "
    "nothing. 409 while the first is still running, 422 if the key was used for a different "
    "method, path or body. A request that fails (4xx, 5xx) keeps nothing: its retry runs "
    "again. Keys are per user; use a new one (e.g. a UUID) for each new request.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "example": "0b6a4a0e-4c54-4f4e-9d67-3c0f8f6d2d1e",
}
IDEMPOTENT_REPLAYED_HEADER = "IDEMPOTENT_REPLAYED"
# Operations that take `Idempotency-Key` (todo/pipeline/idempotency.py): the unsafe methods
# of the paths under /api/{user_id}.
IDEMPOTENT_METHODS = frozenset({"post", "put", "patch", "delete"})
IDEMPOTENT_PATHS = "/api/{user_id}"
# What a key can add to an operation's answers: 400 a malformed key, 409 its first request
# still in flight, 422 the key used for another request.
IDEMPOTENCY_ERRORS = (400, 409, 422)


class ProblemDocumentationPlugin(apispec.BasePlugin):
    """Documents the service's errors as it sends them: every error response flask-smorest
    registers (one per HTTP status, lazily, with `ProblemSchema`) as `application/problem+json`
    with the headers that status carries; `X-Request-ID` on every response; and on every
    unsafe operation under /api/{user_id}, the optional `Idempotency-Key`, its errors and
    `Idempotent-Replayed` on the success response."""

    def init_spec(self, spec: apispec.APISpec) -> None:
        spec.components.header(
            REQUEST_ID_HEADER,
            {
                "description": "The request's id: the client's `X-Request-ID` if it sent a sane "
                "one, else a new one. The service's log line of the request carries it too.",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            },
        )
        spec.components.header(
            IDEMPOTENT_REPLAYED_HEADER,
            {
                "description": "`true` when this is the kept response of an earlier request "
                "with the same `Idempotency-Key`, replayed (nothing ran again).",
                "required": False,
                "schema": {"type": "string", "enum": ["true"]},
            },
        )

    def response_helper(self, response: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Each shared response component as it is registered (`Components.response`)."""
        status = STATUS_BY_PHRASE.get(response.get("description", ""))
        problem = (response.get("content") or {}).pop("application/json", None)
        if problem is not None and (status is None or status >= 400):
            # By then the marshmallow plugin has put a reference to ProblemSchema there.
            if status is not None:
                problem["example"] = problem_example(status)
            response["content"] = {PROBLEM_MIMETYPE: problem}
            response["headers"] = {**ERROR_HEADERS.get(status or 0, {}),
                                   **response.get("headers", {})}
        elif problem is not None:  # a success status: flask-smorest gave it the error schema
            del response["content"]
        response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER
        return response

    def path_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        parameters: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """The path's own parameters (`user_id`, `task_id`) first in each operation's list:
        Swagger UI shows a path's parameters after the operation's (a dozen query ones)."""
        if not parameters:
            return
        for operation in (operations or {}).values():
            if "304" in operation.get("responses", {}):  # a conditional read
                operation.setdefault("parameters", []).append(IF_NONE_MATCH_PARAMETER)
            operation["parameters"] = [*parameters, *operation.get("parameters", [])]
        parameters.clear()

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """`X-Request-ID` on the responses an operation declares inline; `If-None-Match` on
        the operations that answer 304; `Idempotency-Key` where it applies; query parameters
        that are another's alias (`tags[]` for `tags`, metadata `x-alias-of`) left out."""
        idempotent_path = (path or "").startswith(IDEMPOTENT_PATHS)
        for method, operation in (operations or {}).items():
            if "304" in operation.get("responses", {}):  # a conditional read
                operation.setdefault("parameters", []).append(IF_NONE_MATCH_PARAMETER)
            if idempotent_path and method in IDEMPOTENT_METHODS:
                _document_idempotency(operation)
            operation["parameters"] = [
                parameter for parameter in operation.get("parameters", [])
                if not (isinstance(parameter, dict) and _alias_of(parameter))
            ]
            if not operation["parameters"]:
                del operation["parameters"]
            for response in operation.get("responses", {}).values():
                if isinstance(response, dict):
                    response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID_HEADER


class OneOfPlugin(apispec.BasePlugin):
    """Documents a `OneOf` field (todo/api/schemas.py) as `oneOf` its schemas, each a
    component, with the member that chooses between them as the discriminator."""

    def init_spec(self, spec: apispec.APISpec) -> None:
        for plugin in spec.plugins:
            if isinstance(plugin, MarshmallowPlugin):
                converter: Any = plugin.converter  # set by the plugin's init_spec, untyped
                converter.add_attribute_function(one_of2properties)


def one_of2properties(
    self: Any, field: ma.fields.Field[Any], **kwargs: Any
) -> dict[str, Any]:
    """An attribute function of apispec's converter (`self`)."""
    if not isinstance(field, OneOf):
        return {}
    references = {name: self.resolve_nested_schema(schema)
                  for name, schema in field.schemas.items()}
    return {
        "oneOf": list(references.values()),
        "discriminator": {
            "propertyName": field.key,
            "mapping": {name: reference["$ref"] for name, reference in references.items()},
        },
    }


# What Swagger UI shows for each error (without an example it would make one up from the
# schema: a 401 saying "status": 400).
EXAMPLE_DETAILS = {
    400: "Validation failed: due_date: Not a valid date: use YYYY-MM-DD, e.g. 2026-12-01.",
    401: "A bearer token is required: send `Authorization: Bearer <jwt>`.",
    403: "This token may only be used for its own user's data.",
    404: "Task not found.",
    409: "Task limit reached: a user can have at most 10000 tasks.",
    412: "The task's ETag is not the one given (the task has changed since, or the ETag is "
    "another's); fetch the task again and retry.",
    413: "The request body exceeds the limit of 65536 bytes.",
    415: "Send the body as JSON with `Content-Type: application/json`.",
    422: "This Idempotency-Key was used for another request (a different body); a new request "
    "needs a new key.",
    429: "Too many requests: the limit is 120 per 1 minute. Retry after 12 s.",
    503: "The database is unavailable or too slow right now; retry shortly.",
}


def problem_example(status: int) -> dict[str, Any]:
    example: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": EXAMPLE_DETAILS.get(status, HTTPStatus(status).description),
        "instance": "/api/alice/tasks",
    }
    if status == 400:
        example["errors"] = {"json": {"due_date": [
            "Not a valid date: use YYYY-MM-DD, e.g. 2026-12-01."
        ]}}
    return example


def _document_idempotency(operation: dict[str, Any]) -> None:
    """The `Idempotency-Key` parameter, its errors (after the operation's other errors, in
    status order) and `Idempotent-Replayed` on the success responses."""
    operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY_PARAMETER))
    responses: dict[Any, Any] = operation.setdefault("responses", {})
    for status, response in responses.items():
        if str(status).startswith("2") and isinstance(response, dict):
            response.setdefault("headers", {})["Idempotent-Replayed"] = IDEMPOTENT_REPLAYED_HEADER
    # flask-smorest's keys are ints here (apispec makes them strings afterwards).
    errors = {int(status): response for status, response in responses.items()
              if str(status).isdigit() and int(status) >= 400}
    for status in IDEMPOTENCY_ERRORS:
        errors.setdefault(status, HTTPStatus(status).name)  # the shared component, by name
    others = {status: response for status, response in responses.items()
              if not (str(status).isdigit() and int(status) >= 400)}
    operation["responses"] = {**dict(sorted(errors.items())), **others}


def _alias_of(parameter: dict[str, Any]) -> Any:
    return parameter.get("x-alias-of") or (parameter.get("schema") or {}).get("x-alias-of")


# flask-smorest describes each status's shared response by its phrase (and the default
# error response by a text that is none).
STATUS_BY_PHRASE = {status.phrase: int(status) for status in HTTPStatus}


class ProblemApi(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    """An `Api` whose errors are documented as problem+json (`ProblemSchema`); the wire side
    is todo/errors.py."""

    ERROR_SCHEMA = ProblemSchema

    def __init__(self) -> None:
        super().__init__(
            spec_kwargs={"extra_plugins": [ProblemDocumentationPlugin(), OneOfPlugin()]}
        )


def documents_errors(blueprint: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Document the problem+json error responses an operation can give."""

    def decorator(view: F) -> F:
        for status in statuses:
            view = blueprint.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorator
