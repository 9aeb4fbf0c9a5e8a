"""The Flask application class: Flask, with a cheaper check for async views and hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask import Flask

COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


class TodoFlask(Flask):
    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask calls this for every hook and view of every request (14 times for a task
        write), and its `inspect.iscoroutinefunction` check cost 5 % of a request's CPU.
        Plain functions and bound methods (all of this app's) are told apart by their code
        flags; anything else gets Flask's full check."""
        code = getattr(getattr(func, "__func__", func), "__code__", None)
        if code is not None and not code.co_flags & COROUTINE_FLAGS:
            return func
        return super().ensure_sync(func)
