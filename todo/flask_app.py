"""The Flask application class: Flask, with a cheaper check for async views and hooks, no
answers outside problem+json that an API client could trip over (HTML redirects, HTML
`OPTIONS` replies), and path variables that can take a converter by name (`<task_id>`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.routing import BaseConverter, Map, Rule

from todo.api.responses import no_content

COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


class ApiUrlMap(Map):
    """werkzeug's URL map without `merge_slashes`: a path with an empty segment
    (`/api//alice/tasks`) is not a path of this API, so it is a 404 problem instead of an
    HTML 308 redirect to the path with the slashes merged.

    `converters_by_variable` gives a path variable written without a converter (`<task_id>`)
    a converter of its own, by the variable's name (`ApiRule`): the rule keeps its template,
    which the access log and the metrics label requests with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("merge_slashes", False)
        super().__init__(*args, **kwargs)
        self.converters_by_variable: dict[str, type[BaseConverter]] = {}


class ApiRule(Rule):
    """A rule whose variables without a converter take `ApiUrlMap.converters_by_variable`'s
    for their name, if any (else werkzeug's default)."""

    def get_converter(self, variable_name: str, converter_name: str, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> BaseConverter:
        by_variable: Mapping[str, type[BaseConverter]] = getattr(
            self.map, "converters_by_variable", {}
        )
        if converter_name == "default" and variable_name in by_variable:
            return by_variable[variable_name](self.map, *args, **kwargs)
        return super().get_converter(variable_name, converter_name, args, kwargs)


class TodoFlask(Flask):
    url_map_class = ApiUrlMap
    url_rule_class = ApiRule

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask calls this for every hook and view of every request (14 times for a task
        write), and its `inspect.iscoroutinefunction` check cost 5 % of a request's CPU.
        Plain functions and bound methods (all of this app's) are told apart by their code
        flags; anything else gets Flask's full check."""
        code = getattr(getattr(func, "__func__", func), "__code__", None)
        if code is not None and not code.co_flags & COROUTINE_FLAGS:
            return func
        return super().ensure_sync(func)

    def make_default_options_response(self) -> Response:
        """`OPTIONS` (CORS preflights included): 204 with `Allow` and no body. Flask's own
        answer is a 200 with an empty `text/html` body."""
        response = no_content()
        response.headers["Allow"] = super().make_default_options_response().headers["Allow"]
        return response
