"""The Flask application class: Flask, with a cheaper check for async views and hooks, and no
answers outside problem+json that an API client could trip over (HTML redirects, HTML
`OPTIONS` replies)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask import Flask, Response
from werkzeug.routing import Map

from todo.api.responses import no_content

COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


class ApiUrlMap(Map):
    """werkzeug's URL map without `merge_slashes`: a path with an empty segment
    (`/api//alice/tasks`) is not a path of this API, so it is a 404 problem instead of an
    HTML 308 redirect to the path with the slashes merged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("merge_slashes", False)
        super().__init__(*args, **kwargs)


class TodoFlask(Flask):
    url_map_class = ApiUrlMap

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
