"""SQL pieces every resource shares: statements compiled once to their driver's text, a list
parameter that works on both backends, and LIKE escaping.

A `DriverStatement` is a SQLAlchemy Core statement compiled once per dialect, with the type
conversions of its parameters and result columns looked up once too. Running it is then a
plain DB-API `cursor.execute`: going through SQLAlchemy's `Connection.execute` cost about
150 µs of CPU per statement here (cache-key generation, execution context, result proxy),
as much as a task read's whole view.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    Boolean,
    ColumnElement,
    Dialect,
    Executable,
    Select,
    String,
    bindparam,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeDecorator, TypeEngine

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class DriverStatement:
    sql: str
    # Parameter names in placeholder order (SQLite's `?`), or None for named placeholders.
    positions: tuple[str, ...] | None
    defaults: Mapping[str, Any]  # values the statement carries itself (literals, constants)
    bind_processors: tuple[tuple[str, Processor], ...]
    result_processors: tuple[Processor | None, ...]

    def parameters(self, given: Mapping[str, Any]) -> Mapping[str, Any] | tuple[Any, ...]:
        values = {**self.defaults, **given} if self.defaults else dict(given)
        for name, process in self.bind_processors:
            if name in values:
                values[name] = process(values[name])
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if not any(self.result_processors):
            return tuple(row)
        return tuple(
            process(value) if process is not None else value
            for process, value in zip(self.result_processors, row, strict=True)
        )


@functools.lru_cache(maxsize=1024)
def driver_statement(statement: Executable, dialect: Dialect) -> DriverStatement:
    """`statement` compiled for `dialect` (once: statements are module-level constants or
    come from bounded caches)."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if "POSTCOMPILE" in compiled.string:
        raise ValueError("expanding parameters need SQLAlchemy's execution; use `in_values`")
    defaults = {
        name: bind.effective_value
        for name, bind in compiled.binds.items()
        if not bind.required and bind.effective_value is not None
    }
    bind_processors = tuple(
        (name, process)
        for name, bind in compiled.binds.items()
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    result_processors = tuple(
        column_type.dialect_impl(dialect).result_processor(dialect, None)
        for column_type in _result_types(statement)
    )
    positions = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return DriverStatement(
        compiled.string, positions, defaults, bind_processors, result_processors
    )


def _result_types(statement: Executable) -> list[TypeEngine[Any]]:
    if isinstance(statement, Select):
        return [column.type for column in statement.selected_columns]
    if isinstance(statement, UpdateBase):
        return [column["type"] for column in statement.returning_column_descriptions]
    return []  # textual SQL: values as the driver gives them


class ValueList(TypeDecorator[list[Any]]):
    """A list of values as one parameter: a PostgreSQL array, or JSON text for SQLite's
    `json_each`."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return orjson.dumps(list(value)).decode()


class InValues(ColumnElement[bool]):
    """`column IN (the values of one list parameter)`: the same SQL text for any number of
    values, unlike an expanding IN, so the statement compiles once."""

    # Statements holding it are compiled once by `driver_statement`, never looked up in
    # SQLAlchemy's compiled cache (which would need its children declared for cache keys).
    inherit_cache = False
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], values: BindParameter[Any]) -> None:
        self.column = column
        self.values = values


def in_values(column: ColumnElement[Any] | QueryableAttribute[Any], name: str) -> InValues:
    """`column IN` the values of the list parameter `name`."""
    if isinstance(column, QueryableAttribute):
        column = column.expression
    return InValues(column, bindparam(name, type_=ValueList()))


@compiles(InValues, "postgresql")
def _in_values_postgresql(element: InValues, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY({compiler.process(element.values, **kw)})"


@compiles(InValues)
def _in_values_sqlite(element: InValues, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    values = compiler.process(element.values, **kw)
    return f"{column} IN (SELECT value FROM json_each({values}))"


def escape_like(text: str) -> str:
    """Make `%`, `_` and the escape character itself match literally in a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

