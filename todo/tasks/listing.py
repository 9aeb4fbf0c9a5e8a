"""The listing: filters, sort orders and pagination of `GET /api/{user_id}/tasks`.

One statement per page: each task's tag names are stored with it (no join) and a window
function counts all matches. On PostgreSQL the database also renders the page as JSON, so no
Python object is built per task on the busiest endpoint; on SQLite Python renders the same
JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Literal

import orjson
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from todo.data.change_numbers import USER_CHANGE_NUMBER, user_version
from todo.data.database import Reads
from todo.data.models import Priority, Tag, Task, tag_key, task_tags
from todo.data.sql import escape_like, in_values
from todo.tasks.representation import TASK_COLUMNS, task_json, task_json_sql

SortKey = Literal["created_at", "updated_at", "title", "due_date", "priority"]
SearchKind = Literal["indexed", "scanned"]
# pg_trgm's indexes narrow a substring search only to rows holding its trigrams, and only a
# run of three letters or digits has one; any other search tests every task of the user.
TRIGRAM = re.compile(r"[^\W_]{3}")


@dataclass(frozen=True)
class TaskListArgs:
    search: str | None = None
    status: Literal["all", "pending", "completed"] = "all"
    priority: str | None = None
    tags: tuple[str, ...] = ()
    tag_mode: Literal["any", "all"] = "any"
    due_from: date | None = None
    due_to: date | None = None
    sort_by: SortKey = "created_at"
    sort_direction: Literal["asc", "desc"] = "desc"
    limit: int = 50
    offset: int = 0


def search_kind(search: str) -> SearchKind:
    """`indexed` when the trigram indexes can narrow the search, else `scanned`."""
    return "indexed" if TRIGRAM.search(search) else "scanned"


@dataclass(frozen=True)
class ListShape:
    """What decides the SQL of a listing, as opposed to the values bound into it. Statements
    are built once per shape and reused: building and hashing a statement costs more
    Python time than running it."""

    search: SearchKind | None
    status: Literal["all", "pending", "completed"]
    priority: bool
    due_from: bool
    due_to: bool
    tag_mode: Literal["any", "all"] | None
    sort_by: SortKey
    sort_direction: Literal["asc", "desc"]

    @property
    def filtered(self) -> bool:
        """Whether anything narrows the user's tasks."""
        return (
            self.search is not None
            or self.status != "all"
            or self.priority
            or self.due_from
            or self.due_to
            or self.tag_mode is not None
        )

    @classmethod
    def of(cls, args: TaskListArgs) -> ListShape:
        return cls(
            search=search_kind(args.search) if args.search else None,
            status=args.status,
            priority=args.priority is not None,
            due_from=args.due_from is not None,
            due_to=args.due_to is not None,
            tag_mode=args.tag_mode if args.tags else None,
            sort_by=args.sort_by,
            sort_direction=args.sort_direction,
        )


def bound_values(user_id: str, args: TaskListArgs) -> dict[str, Any]:
    """The values bound into the statement of `ListShape.of(args)` (and into the counts of
    `todo.tasks.stats`, which filter with `filter_condition`)."""
    keys = sorted({tag_key(name) for name in args.tags})
    return {
        "user_id": user_id,
        "pattern": f"%{escape_like(args.search)}%" if args.search else None,
        "priority": args.priority,
        "due_from": args.due_from,
        "due_to": args.due_to,
        "tag_keys": keys,
        "tag_count": len(keys),
        "limit": args.limit,
        "offset": args.offset,
    }


def filter_condition(shape: ListShape) -> ColumnElement[bool]:
    """The WHERE condition of the user's tasks matching the filters: the listing's, and the
    counts' (`todo.tasks.stats`)."""
    conditions: list[ColumnElement[bool]] = [Task.user_id == bindparam("user_id")]
    if shape.search is not None:
        conditions.append(_search_condition(shape.search))
    if shape.status != "all":
        conditions.append(Task.completed.is_(shape.status == "completed"))
    if shape.priority:
        conditions.append(Task.priority == bindparam("priority"))
    if shape.due_from:
        conditions.append(Task.due_date >= bindparam("due_from"))
    if shape.due_to:
        conditions.append(Task.due_date <= bindparam("due_to"))
    if shape.tag_mode is not None:
        conditions.append(Task.id.in_(_tasks_with_tags(shape.tag_mode)))
    return and_(*conditions)


def _search_condition(kind: SearchKind) -> ColumnElement[bool]:
    """Title or description contains the pattern, ignoring case.

    `scanned` is the fast path for a search every task is tested against: PostgreSQL's
    ILIKE lowercases the pattern again for every row it tests (a UTF-8 database's ILIKE is
    `lower(text) LIKE lower(pattern)`), while `lower(:pattern)` here is folded once, when the
    statement is planned. A search for 200 `%` over a user's 10,000 tasks took 59-63 ms
    with ILIKE and 14-16 ms this way (scripts/search_cost.py). `indexed` keeps ILIKE, which
    the trigram indexes serve. The two give the same answer (tests/test_listing.py checks)."""
    pattern = bindparam("pattern", type_=String)
    if kind == "indexed":
        return or_(
            Task.title.ilike(pattern, escape="\\"),
            Task.description.ilike(pattern, escape="\\"),
        )
    lowered = func.lower(pattern)
    return or_(
        func.lower(Task.title).like(lowered, escape="\\"),
        func.lower(Task.description).like(lowered, escape="\\"),
    )


def _tasks_with_tags(mode: Literal["any", "all"]) -> Select[Any]:
    tagged = (
        select(task_tags.c.task_id)
        .join(Tag, Tag.id == task_tags.c.tag_id)
        .where(
            Tag.user_id == bindparam("user_id"),
            in_values(Tag.name_key, "tag_keys"),
        )
    )
    if mode == "all":
        tagged = tagged.group_by(task_tags.c.task_id).having(
            func.count() == bindparam("tag_count", type_=Integer)
        )
    return tagged


def _priority_rank(priority: Any) -> Any:
    return case(
        {Priority.HIGH.value: 0, Priority.MEDIUM.value: 1, Priority.LOW.value: 2},
        value=priority,
        else_=3,
    )


def _ordering(
    sort_by: SortKey, direction: Literal["asc", "desc"], columns: Any = None
) -> list[Any]:
    """ORDER BY keys, on the tasks table or on `columns` of a subquery with its columns."""
    c = Task.__table__.c if columns is None else columns
    descending = direction == "desc"
    keys: list[Any]
    if sort_by == "due_date":
        primary = c.due_date.desc() if descending else c.due_date.asc()
        keys = [primary.nulls_last()]
    else:
        expression = {
            "created_at": c.created_at,
            "updated_at": c.updated_at,
            "title": func.lower(c.title),
            "priority": _priority_rank(c.priority),
        }[sort_by]
        keys = [expression.desc() if descending else expression.asc()]
    if sort_by != "created_at":
        keys.append(c.created_at.desc())
    keys.append(c.id.asc())
    return keys


def _page(shape: ListShape, *columns: Any) -> Select[Any]:
    """`columns` of the tasks on the requested page: filtered, in order, limited."""
    return (
        select(*columns)
        .where(filter_condition(shape))
        .order_by(*_ordering(shape.sort_by, shape.sort_direction))
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


@lru_cache(maxsize=512)
def _rows_statement(shape: ListShape) -> Select[Any]:
    """The page as rows: tasks, their tags and the count of all matches."""
    return _page(shape, *TASK_COLUMNS, func.count().over().label("total"))


@lru_cache(maxsize=512)
def _count_statement(shape: ListShape) -> Select[Any]:
    return select(func.count()).select_from(Task).where(filter_condition(shape))


def _total(reads: Reads, shape: ListShape, parameters: dict[str, Any]) -> int:
    """The count of all matches, for a page past the last one (no row carries it there)."""
    if not parameters["offset"]:
        return 0
    return int(reads.scalar(_count_statement(shape), parameters))


def _envelope(data_json: bytes, total: int, args: TaskListArgs) -> bytes:
    tail = orjson.dumps({"total": total, "limit": args.limit, "offset": args.offset})
    return b'{"data":' + data_json + b"," + tail[1:]


def list_page(reads: Reads, user_id: str, args: TaskListArgs) -> tuple[bytes, int]:
    """The listing's JSON body, `{"data": [...], "total", "limit", "offset"}`, and the
    user's change number it reflects (for its validator)."""
    shape, parameters = ListShape.of(args), bound_values(user_id, args)
    if reads.dialect.name == "postgresql":
        page = reads.first(_rendered_page_statement(shape), parameters)
        assert page is not None  # an aggregate: always one row
        data, total, change_number = page
        if total is None:
            total = _total(reads, shape, parameters)
        return _envelope(data.encode(), int(total), args), change_number or 0
    # SQLite: the version first, so the page is at least as new as the validator says.
    change_number = user_version(reads, user_id).change_number
    rows = reads.all(_rows_statement(shape), parameters)
    total = rows[0][len(TASK_COLUMNS)] if rows else _total(reads, shape, parameters)
    body = _envelope(orjson.dumps([task_json(row) for row in rows]), int(total), args)
    return body, change_number


def page_statement(user_id: str, args: TaskListArgs) -> Select[str, Any]:
    """The PostgreSQL page statement with these values bound (for EXPLAIN and tools)."""
    return _rendered_page_statement(ListShape.of(args)).params(bound_values(user_id, args))


@lru_cache(maxsize=512)
def _rendered_page_statement(shape: ListShape) -> Select[str, Any]:
    """PostgreSQL: the page as one JSON array (in the listing's order) and the count of all
    matches, in one statement.

    Each task is `representation.task_json_sql`: the JSON `task_json` gives, written by
    PostgreSQL.
    """
    # Without filters, counting reads only the (user_id, ...) index. With filters, the rows
    # must be read to test them anyway, so a window count over the same scan is cheaper
    # than a second pass.
    count_separately = not shape.filtered
    page_columns: list[Any] = list(TASK_COLUMNS)
    if not count_separately:
        page_columns.append(func.count().over().label("total"))
    page = _page(shape, *page_columns).subquery("page")
    task = task_json_sql(page.c)
    in_order = _ordering(shape.sort_by, shape.sort_direction, page.c)
    data = func.coalesce(
        func.json_agg(aggregate_order_by(task, *in_order)), literal_column("'[]'::json")
    )
    total: Any = (
        _count_statement(shape).scalar_subquery() if count_separately else func.max(page.c.total)
    )
    # The user's change number, read in the same snapshot as the page: its validator.
    return select(
        cast(data, Text).label("data"), total.label("total"),
        USER_CHANGE_NUMBER.label("change_number"),
    )
