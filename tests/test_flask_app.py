"""The app class's faster `ensure_sync` must still tell async callables apart."""

from __future__ import annotations

import functools

import pytest

from todo.flask_app import TodoFlask


def plain(value: int) -> int:
    return value


async def asynchronous(value: int) -> int:
    return value


class Holder:
    def method(self) -> int:
        return 1

    async def async_method(self) -> int:
        return 1


@pytest.fixture
def app() -> TodoFlask:
    return TodoFlask(__name__)


def test_plain_functions_and_methods_are_returned_as_they_are(app: TodoFlask) -> None:
    holder = Holder()
    assert app.ensure_sync(plain) is plain
    bound = holder.method
    assert app.ensure_sync(bound) is bound


@pytest.mark.parametrize(
    "callable_",
    [asynchronous, Holder().async_method, functools.partial(asynchronous, 1)],
    ids=["function", "bound method", "partial"],
)
def test_async_callables_get_flasks_treatment(app: TodoFlask, callable_: object) -> None:
    try:
        wrapped = app.ensure_sync(callable_)  # type: ignore[arg-type]
    except RuntimeError as error:  # Flask without its `async` extra (asgiref) says so
        assert "async" in str(error)
        return
    assert wrapped is not callable_
