"""flask-smorest configured for this contract: 400 (not 422), problem+json errors in the
responses and in the OpenAPI document, strict parsing of bodies and query strings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, NoReturn, TypeVar

import flask_smorest
import marshmallow as ma
import orjson
from flask import Request, Response
from flask_smorest.utils import prepare_response
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from todo.problems import PROBLEM_MIMETYPE, problem_response, validation_detail
from todo.schemas import ProblemSchema

READ_ONLY_FIELDS = frozenset({"id", "user_id", "created_at", "updated_at"})


class StrictParser(FlaskParser):
    """Rejects unknown or repeated query parameters and bad JSON with 400, and names
    read-only fields."""

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


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Blueprint with the strict parser, and typed decorators for mypy."""

    ARGUMENTS_PARSER = StrictParser()

    def route(self, rule: str, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().route(rule, **options)
        return decorator

    def arguments(self, schema: Any, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().arguments(schema, **options)
        return decorator

    def response(self, status_code: int, schema: Any = None, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().response(status_code, schema, **options)
        return decorator

    def alt_response(self, status_code: int, **options: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = super().alt_response(status_code, **options)
        return decorator

    @staticmethod
    def doc(**kwargs: Any) -> Callable[[F], F]:
        decorator: Callable[[F], F] = flask_smorest.Blueprint.doc(**kwargs)
        return decorator


class ProblemApi(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    """An `Api` whose errors are problem+json, both on the wire and in the document."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        return http_exception_to_problem(error)

    def _register_responses(self) -> None:
        for status in HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, Any] = {"description": "Error", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


def http_exception_to_problem(error: HTTPException) -> Response:
    """Render a werkzeug/webargs HTTP error (routing, 405, 413, validation) as a problem."""
    status = error.code or 500
    headers: dict[str, str] = {}
    # werkzeug puts `Allow` (405) and similar headers on the exception itself.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            headers[name] = value
    data = getattr(error, "data", None) or {}
    headers.update(data.get("headers") or {})
    errors = _string_keys(data.get("errors") or data.get("messages"))
    if errors:
        return problem_response(400 if status == 422 else status, validation_detail(errors),
                                errors=errors, headers=headers)
    detail = data.get("message") or error.description or HTTPStatus(status).phrase
    return problem_response(status, str(detail), headers=headers)


def _string_keys(messages: Any) -> Any:
    """marshmallow keys the errors of list items by index (`{"tags": {0: [...]}}`); JSON
    object keys must be strings."""
    if isinstance(messages, Mapping):
        return {str(key): _string_keys(value) for key, value in messages.items()}
    return messages


def documents_errors(blueprint: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Document the problem+json error responses an operation can give."""

    def decorator(view: F) -> F:
        for status in statuses:
            view = blueprint.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorator
