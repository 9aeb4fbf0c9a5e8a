"""The export: every task and tag of a user as one JSON document, written while it is read.

`{"user_id", "exported_at", "tasks": [...], "tags": [{"name", "usage_count"}]}`: the tasks
as the API renders them (`representation.task_json_sql` on PostgreSQL, which writes each
task's JSON itself, `task_json` on SQLite), in the listing's default order (`created_at`
descending, then `id`), and the tags in the order of `GET /tags`.

The tasks are read in pages of `PAGE_SIZE`, each page after the last task of the one before
(keyset pagination on `(created_at, id)`, which `ix_tasks_user_id_created_at` holds in that
order, so a page costs the same at the end of 10,000 tasks as at the start). Each page is
its own short read on a pooled connection, given back before the page is sent: a slow
download holds neither a connection nor a transaction, and the process holds one page at a
time, not the document.

Consistency: no transaction spans the pages, so the document is not a snapshot.

- A task that exists for the whole export appears exactly once, never twice or not at all:
  the keyset is made of values a task never changes. It appears as it was when its page was
  read, so two tasks of different pages may show states that never coexisted (a write between
  the pages, or `tags` disagreeing with the tasks: they are read with the first page).
- A task created during the export usually sorts before the page being read (it is the
  newest), so it is left out; one created with an older clock reading, or committed late,
  may be included. A task deleted during the export is included if its page was read before
  the delete, else left out.
- `exported_at` is when the export started: every write acknowledged before it is in the
  document, later ones may or may not be.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
from flask import Response, current_app, stream_with_context
from sqlalchemy import (
    Integer,
    LargeBinary,
    Select,
    Text,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from todo.data.database import Reads, reading
from todo.data.models import Task, utc_now
from todo.tags.queries import all_tag_usage
from todo.tasks.representation import (
    TASK_COLUMNS,
    TASK_FIELDS,
    format_timestamp,
    task_json,
    task_json_sql,
)

log = logging.getLogger("todo.export")

# Tasks per page (a read each). The process's peak grows with the page, by about 9 KiB per
# task of 1 KiB of JSON (the driver's buffers and result, the bytes): exporting 10,000
# tasks of 10.7 MB took 1.0 / 1.8 / 4.3-4.8 MB over the RSS before it with pages of
# 100 / 200 / 500 tasks, all in 0.2 s (tests/export_rss.py).
PAGE_SIZE = 200
# Where a page's last task is, in the rows of SQLite's statement (the `TASK_COLUMNS`).
FIELD_NAMES = [field.name for field in TASK_FIELDS]
CREATED_AT, ID = FIELD_NAMES.index("created_at"), FIELD_NAMES.index("id")

Position = tuple[datetime, uuid.UUID]  # a task's (created_at, id): where a page ends


@dataclass(frozen=True)
class Page:
    # The page's part of the `tasks` array: its tasks' JSON objects separated by commas,
    # after a comma when it continues an earlier page (so each page is one chunk, sent with
    # no copy; a chunk of its own for each comma would be a small write before each page).
    json: bytes
    count: int
    # Where the next page starts; None when this one is the last (shorter than a page).
    next_after: Position | None


ORDER = (Task.created_at.desc(), Task.id.asc())  # the listing's default order


def _page(after: bool) -> Select[Any]:
    """The `TASK_COLUMNS` of a page of the user's tasks: the first, or the one after a
    position."""
    statement = select(*TASK_COLUMNS).where(Task.user_id == bindparam("user_id"))
    if after:
        created_at = bindparam("after_created_at", type_=Task.created_at.type)
        after_id = bindparam("after_id", type_=Task.id.type)
        # `created_at <= x` bounds the index scan; the rest drops the ties already sent.
        statement = statement.where(
            Task.created_at <= created_at,
            or_(Task.created_at < created_at, Task.id > after_id),
        )
    return statement.order_by(*ORDER).limit(bindparam("limit", type_=Integer))


def _rendered_page(after: bool) -> Select[Any]:
    """PostgreSQL: a page as one value, its `Page.json` as UTF-8 bytes (each task written by
    `task_json_sql`), with its size and its last task's position.

    One bytes value per page, not a text per task: psycopg2 makes a Python str of each text,
    4 bytes a character as soon as it holds one emoji, and pages of tasks' strs, encoded and
    joined, peaked at 12 KiB per task of 1 KiB against 9 KiB this way (tests/export_rss.py;
    a page as one text, whose str is 4 bytes a character throughout, at 18 KiB)."""
    page = _page(after).subquery("page")
    c = page.c
    tasks: Any = func.string_agg(
        cast(task_json_sql(c), Text),
        aggregate_order_by(literal_column("','"), c.created_at.desc(), c.id.asc()),
    )
    if after:
        tasks = literal_column("','", Text).concat(tasks)
    last_id = func.array_agg(aggregate_order_by(c.id, c.created_at.asc(), c.id.desc()))[1]
    return select(
        func.convert_to(tasks, literal_column("'UTF8'"), type_=LargeBinary),
        func.count(),
        func.min(c.created_at),
        last_id,
    )


# Built once: compiled once for each dialect (todo.data.sql.driver_statement).
PAGES = {after: _page(after) for after in (False, True)}
RENDERED_PAGES = {after: _rendered_page(after) for after in (False, True)}


def read_page(reads: Reads, user_id: str, after: Position | None,
              size: int | None = None) -> Page:
    """The user's tasks after `after` (from the first when None), at most `size`
    (default `PAGE_SIZE`)."""
    size = size or PAGE_SIZE
    parameters: dict[str, Any] = {"user_id": user_id, "limit": size}
    if after is not None:
        parameters["after_created_at"], parameters["after_id"] = after
    if reads.dialect.name == "postgresql":
        row = reads.first(RENDERED_PAGES[after is not None], parameters)
        assert row is not None  # aggregates without GROUP BY: always one row
        json, count, *last = row
    else:
        rows = reads.all(PAGES[after is not None], parameters)
        count = len(rows)
        json = orjson.dumps([task_json(row) for row in rows])
        json = (b"," if after is not None else b"") + json[1:-1]
        last = [rows[-1][CREATED_AT], rows[-1][ID]] if rows else []
    if not count:
        return Page(b"", 0, None)
    return Page(json, count, (last[0], last[1]) if count == size else None)


def export_response(user_id: str) -> Response:
    """200 with the user's document, streamed.

    The tags and the first page are read here, before the response starts: a database that
    is down or too slow is then the usual 503 problem. Once the first bytes are sent the
    status is 200 and can no longer change; see `_document` for a failure after that."""
    started = utc_now()
    with reading() as reads:
        tags = all_tag_usage(reads, user_id)
        first = read_page(reads, user_id, after=None)
    head = orjson.dumps({"user_id": user_id, "exported_at": format_timestamp(started)})
    head = head[:-1] + b',"tasks":['
    tail = b'],"tags":' + orjson.dumps(tags) + b"}"
    return current_app.response_class(
        stream_with_context(_document(user_id, head, first, tail)),
        mimetype="application/json",
        headers={"Content-Disposition": content_disposition(user_id)},
    )


def _document(user_id: str, head: bytes, first: Page, tail: bytes) -> Iterator[bytes]:
    """The document's bytes: the head and first page, each further page as it is read, then
    the tags. No connection is held while a chunk waits for the client (the reads end before
    each `yield`), so a client that stops reading leaves nothing open.

    A read that fails mid-stream (the database gone, a statement timeout) cannot become a
    problem response: the status line went out with the first chunk. The error is logged
    with the number of tasks sent and raised again, and the WSGI server (gunicorn, werkzeug)
    then closes the connection without the chunked body's final empty chunk: the client sees
    a truncated response (an HTTP error in any client library) and an unterminated JSON
    document, never a complete-looking one. Retrying the export is the remedy."""
    yield head + first.json
    sent, after = first.count, first.next_after
    try:
        while after is not None:
            with reading() as reads:
                page = read_page(reads, user_id, after)
            if page.count:
                yield page.json
            sent, after = sent + page.count, page.next_after
    except Exception:
        log.warning(
            "export failed after %d tasks had been sent; the response is cut short", sent,
            extra={"fields": {"tasks_sent": sent}},
        )
        raise
    yield tail


# Characters kept in the download's file name; any other becomes `_`.
UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]")
FILE_NAME_ID_MAX = 100  # characters of the user id kept (ids may be 255; file names 255 bytes)


def content_disposition(user_id: str) -> str:
    """`attachment; filename="todo-export-<user_id>.json"` for any user id.

    The file name keeps ASCII letters, digits, `.`, `_` and `-` of the id (quotes,
    separators, control characters such as CR and LF, path separators all become `_`), and
    at most 100 of its characters. An id with other letters or digits (`émile`, `名前`) adds
    the RFC 6266 `filename*` with them kept (percent-encoded UTF-8), which browsers prefer."""
    short = user_id[:FILE_NAME_ID_MAX]
    ascii_id = UNSAFE_ASCII.sub("_", short)
    value = f'attachment; filename="todo-export-{ascii_id}.json"'
    unicode_id = "".join(c if c.isalnum() or c in "._-" else "_" for c in short)
    if unicode_id != ascii_id:
        value += "; filename*=UTF-8''" + quote(f"todo-export-{unicode_id}.json", safe="")
    return value
