"""GET /api/{user_id}/export: the document equals what the list and /tags show, it is
streamed page by page (no connection held between pages, memory bounded by a page, not by
the document: 10,000 tasks measured on PostgreSQL), what concurrent writes do to it, errors
before and during the stream, and the download's file name for any user id."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import exc as sa_exc
from werkzeug.http import parse_options_header

from tests.conftest import bearer, new_task, serve
from todo.account import export
from todo.data.models import Tag, Task, User, tag_key, task_tags
from todo.extensions import db
from todo.tasks import writes
from todo.tasks.representation import sort_tag_names

USER = "user-a"
OTHER = "user-b"
PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parent.parent
Document = dict[str, Any]


def export_url(user_id: str) -> str:
    return f"/api/{quote(user_id, safe='')}/export"


def exported(client: FlaskClient, user_id: str = USER) -> Document:
    response = client.get(export_url(user_id), headers=bearer(user_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment; ")
    document: Document = json.loads(response.get_data())
    assert list(document) == ["user_id", "exported_at", "tasks", "tags"]
    return document


def listed(client: FlaskClient, user_id: str = USER) -> list[dict[str, Any]]:
    """Every task through the list endpoint, page after page, in its default order."""
    tasks: list[dict[str, Any]] = []
    while True:
        response = client.get(f"/api/{quote(user_id, safe='')}/tasks",
                              query_string={"limit": 100, "offset": len(tasks)},
                              headers=bearer(user_id))
        assert response.status_code == 200
        page = response.get_json()
        tasks += page["data"]
        if len(tasks) >= page["total"]:
            assert len(tasks) == page["total"]
            return tasks


def tag_usage(client: FlaskClient, user_id: str = USER) -> list[dict[str, Any]]:
    response = client.get(f"/api/{quote(user_id, safe='')}/tags", query_string={"limit": 100},
                          headers=bearer(user_id))
    assert response.status_code == 200
    usage: list[dict[str, Any]] = response.get_json()
    assert len(usage) < 100  # all of them
    return usage


def assert_matches_the_api(client: FlaskClient, document: Document,
                           user_id: str = USER) -> None:
    assert document["user_id"] == user_id
    assert document["tasks"] == listed(client, user_id)
    assert document["tags"] == tag_usage(client, user_id)


@dataclass
class Clock:
    now: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def at(self, second: float) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(seconds=second)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every write while this fixture is active is stamped with `clock.now`: ties on
    `created_at` across page boundaries, which the keyset must break by id."""
    fake = Clock()
    monkeypatch.setattr(writes, "utc_now", lambda: fake.now)
    return fake


@pytest.fixture
def page_size(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(export, "PAGE_SIZE", 3)
    return 3


def make_tasks(client: FlaskClient, clock: Clock, count: int, seed: int = 0,
               user_id: str = USER) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tasks = []
    for number in range(count):
        clock.at(rng.choice([0, 1, 1, 1, 2, 3]))  # mostly ties
        fields: dict[str, Any] = {
            "title": f"task {number} " + rng.choice(["é", '"q"', "back\\slash", "名前", "x"]),
            "priority": rng.choice(["High", "Medium", "Low"]),
            "tags": rng.sample(["work", "Home", "errands", "ünï"], rng.randint(0, 3)),
        }
        if rng.random() < 0.5:
            fields["due_date"] = f"2026-02-{rng.randint(1, 28):02d}"
        if rng.random() < 0.5:
            fields["description"] = rng.choice(["line\nbreak", "tab\there", "", "😀 emoji"])
        task = new_task(client, user_id, **fields)
        if rng.random() < 0.3:
            client.patch(f"/api/{user_id}/tasks/{task['id']}/complete", headers=bearer(user_id))
        tasks.append(task)
    return tasks


# ---------------------------------------------------------------- the document


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 7, 17])
def test_the_export_is_what_the_list_and_tags_show(
    client: FlaskClient, clock: Clock, page_size: int, count: int
) -> None:
    """Pages of 3: one page, a full page and nothing after it, several pages, ties on
    created_at across page boundaries, completed tasks included."""
    make_tasks(client, clock, count, seed=count)
    make_tasks(client, clock, 5, seed=99, user_id=OTHER)  # never in USER's export
    document = exported(client)
    assert len(document["tasks"]) == count
    assert len({task["id"] for task in document["tasks"]}) == count
    assert_matches_the_api(client, document)


def test_the_default_page_size_across_pages(client: FlaskClient, clock: Clock) -> None:
    make_tasks(client, clock, export.PAGE_SIZE + 2)
    document = exported(client)
    assert len(document["tasks"]) == export.PAGE_SIZE + 2
    assert_matches_the_api(client, document)


def test_an_empty_account_exports_an_empty_document(client: FlaskClient) -> None:
    before = datetime.now(UTC)
    response = client.get(export_url(USER), headers=bearer(USER))
    after = datetime.now(UTC)
    assert response.status_code == 200
    document = json.loads(response.get_data())
    exported_at = document.pop("exported_at")
    assert document == {"user_id": USER, "tasks": [], "tags": []}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", exported_at)
    stamp = datetime.strptime(exported_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="todo-export-user-a.json"'
    )


def test_the_export_is_a_stream_of_pages(
    app: Flask, client: FlaskClient, clock: Clock, page_size: int
) -> None:
    """The body is a generator, one chunk per page, and no pooled connection is checked out
    while a chunk waits for the client."""
    make_tasks(client, clock, 10)
    response = client.get(export_url(USER), headers=bearer(USER), buffered=False)
    assert response.status_code == 200 and response.is_streamed
    assert "Content-Length" not in response.headers
    with app.app_context():
        pool = db.engine.pool
    chunks = []
    for chunk in response.response:
        chunks.append(chunk)
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
    response.close()
    assert len(chunks) == 1 + 3 + 1  # head and first page, three more pages, the tags
    assert json.loads(b"".join(chunks))["tasks"] == listed(client)


def test_a_real_server_sends_it_chunked(app: Flask, client: FlaskClient, clock: Clock,
                                        page_size: int) -> None:
    make_tasks(client, clock, 7)
    with serve(app) as base:
        request = urllib.request.Request(base + export_url(USER), headers=bearer(USER))
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert response.headers["Content-Length"] is None
            document = json.loads(response.read())
    assert_matches_the_api(client, document)


def test_writes_during_an_export(client: FlaskClient, clock: Clock, page_size: int) -> None:
    """What export.py's docstring says concurrent writes do: every task that exists for the
    whole export appears exactly once, each as its page read it; a task deleted before its
    page is read is left out; a new task (the newest) is left out."""
    make_tasks(client, clock, 9)
    before = listed(client)
    response = client.get(export_url(USER), headers=bearer(USER), buffered=False)
    chunks = iter(response.response)
    first = next(chunks)  # the head and the first page (3 tasks) are read and sent
    sent, later = before[:3], before[3:]
    clock.at(10)
    client.patch(f"/api/{USER}/tasks/{sent[0]['id']}", json={"title": "edited after"},
                 headers=bearer(USER))
    edited = client.patch(f"/api/{USER}/tasks/{later[0]['id']}", json={"title": "edited"},
                          headers=bearer(USER)).get_json()
    client.delete(f"/api/{USER}/tasks/{later[-1]['id']}", headers=bearer(USER))
    new_task(client, USER, title="created during the export")
    document = json.loads(first + b"".join(chunks))
    response.close()
    assert document["tasks"] == [*sent, edited, *later[1:-1]]


# ---------------------------------------------------------------- errors


def unavailable(*args: Any, **kwargs: Any) -> Any:
    raise sa_exc.OperationalError("SELECT ...", {}, Exception("server closed the connection"))


def test_a_database_failure_before_the_stream_is_a_503_problem(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "read_page", unavailable)
    response = client.get(export_url(USER), headers=bearer(USER))
    assert response.status_code == 503 and response.mimetype == PROBLEM
    assert int(response.headers["Retry-After"]) >= 1
    assert "Content-Disposition" not in response.headers


def failing_after_first_page(monkeypatch: pytest.MonkeyPatch) -> None:
    real_read_page = export.read_page

    def read_page(reads: Any, user_id: str, after: Any, size: int | None = None) -> Any:
        if after is not None:
            unavailable()
        return real_read_page(reads, user_id, after, size)

    monkeypatch.setattr(export, "read_page", read_page)


def test_a_database_failure_mid_stream_cuts_the_response_short(
    app: Flask, client: FlaskClient, clock: Clock, page_size: int,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the 200 is sent, a failure cannot become a problem: the connection is closed
    without the chunked body's end, which HTTP clients report, and the log says why."""
    make_tasks(client, clock, 7)
    failing_after_first_page(monkeypatch)
    with serve(app) as base:
        request = urllib.request.Request(base + export_url(USER), headers=bearer(USER))
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            with pytest.raises(Exception) as cut_short:
                response.read()
    assert type(cut_short.value).__name__ in ("IncompleteRead", "ProtocolError"), cut_short
    assert "export failed after 3 tasks had been sent" in caplog.text
    # The same through the test client: the body's iteration raises after the first page.
    response = client.get(export_url(USER), headers=bearer(USER), buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    with pytest.raises(sa_exc.OperationalError):
        next(chunks)
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)  # never a complete-looking document


def test_export_rejects_query_parameters(client: FlaskClient) -> None:
    response = client.get(export_url(USER) + "?format=csv", headers=bearer(USER))
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert list(response.get_json()["errors"]["query"]) == ["format"]


def test_export_is_only_ones_own(client: FlaskClient) -> None:
    new_task(client, OTHER, title="theirs", tags=["secret"])
    response = client.get(export_url(OTHER), headers=bearer(USER))
    assert response.status_code == 403 and response.mimetype == PROBLEM
    assert b"theirs" not in response.get_data()
    response = client.get(export_url(OTHER))
    assert response.status_code == 401 and response.mimetype == PROBLEM
    assert exported(client, USER)["tasks"] == []


# ---------------------------------------------------------------- the file name


ASCII_NAME = re.compile(r'attachment; filename="todo-export-[A-Za-z0-9._-]{1,100}\.json"')


@pytest.mark.parametrize(("user_id", "ascii_name", "unicode_name"), [
    ("plain-Id_1.0", "todo-export-plain-Id_1.0.json", None),
    ('say "hi"', "todo-export-say__hi_.json", None),
    ("a;b=c, d", "todo-export-a_b_c__d.json", None),
    ("..", "todo-export-...json", None),
    ("back\\slash", "todo-export-back_slash.json", None),
    ("tab\tand\r\nnewline", "todo-export-tab_and__newline.json", None),
    ("%41%00", "todo-export-_41_00.json", None),
    ("x" * 255, f"todo-export-{'x' * 100}.json", None),
    ("émile", "todo-export-_mile.json", "todo-export-émile.json"),
    ("名前:..\\x", "todo-export-___.._x.json", "todo-export-名前_.._x.json"),
    ("😀 smile", "todo-export-__smile.json", None),  # nothing more to say in `filename*`
])
def test_the_file_name_is_safe_for_any_user_id(
    client: FlaskClient, user_id: str, ascii_name: str, unicode_name: str | None
) -> None:
    created = client.post(f"/api/{quote(user_id, safe='')}/tasks", json={"title": "mine"},
                          headers=bearer(user_id))
    assert created.status_code == 201, created.get_json()
    response = client.get(export_url(user_id), headers=bearer(user_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    value = response.headers["Content-Disposition"]
    assert value.isascii() and not re.search(r"[\x00-\x1f\x7f]", value)
    first, *rest = value.split("; filename*=")
    assert ASCII_NAME.fullmatch(first), value
    assert first == f'attachment; filename="{ascii_name}"'
    if unicode_name is None:
        assert rest == []
    else:
        assert rest == ["UTF-8''" + quote(unicode_name, safe="")]
    # A client that reads RFC 6266 takes `filename*` when there is one (werkzeug does).
    assert parse_options_header(value) == ("attachment", {"filename": unicode_name or ascii_name})
    assert json.loads(response.get_data())["user_id"] == user_id


# ---------------------------------------------------------------- 10,000 tasks, memory


def seed(connection: sa.Connection, user_id: str, count: int, rng: random.Random) -> None:
    """`count` tasks of `user_id` written straight to the tables (the triggers keep the
    counts), with long descriptions full of characters JSON escapes, tags, and runs of
    equal `created_at` that straddle the export's page boundaries."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    connection.execute(sa.insert(User), [{"id": user_id, "created_at": now}])
    names = [f"tag {n} " + rng.choice(["é", "名", '"', "\\", "x"]) for n in range(60)]
    tags = {name: uuid.uuid4() for name in names}
    connection.execute(sa.insert(Tag), [
        {"id": tag_id, "user_id": user_id, "name": name, "name_key": tag_key(name),
         "created_at": now} for name, tag_id in tags.items()
    ])
    words = ["milk", "Straße", "名前", 'say "hi"', "back\\slash", "tab\t", "line\n", "😀",
             "plain", "words", "<b>", "\u2028", "naïve", "50%"]
    tasks, links = [], []
    for number in range(count):
        task_id = uuid.uuid4()
        chosen = rng.sample(names, rng.randint(0, 4))
        created = now - timedelta(seconds=number // 7, microseconds=rng.choice([0, 123456]))
        tasks.append({
            "id": task_id, "user_id": user_id,
            "title": f"{number} " + " ".join(rng.choices(words, k=8)),
            "description": None if number % 10 == 0 else " ".join(rng.choices(words, k=120))[:1000],
            "completed": rng.random() < 0.3,
            "priority": rng.choice(["High", "Medium", "Low"]),
            "due_date": None if rng.random() < 0.3 else now.date() + timedelta(days=rng.randint(-30, 30)),
            "created_at": created,
            "updated_at": created + timedelta(seconds=rng.randint(0, 10_000)),
            "tag_names": sort_tag_names(chosen),
        })
        links += [{"task_id": task_id, "tag_id": tags[name]} for name in chosen]
    connection.execute(sa.insert(Task), tasks)
    connection.execute(task_tags.insert(), links)
    connection.execute(sa.text("DELETE FROM tags WHERE usage_count = 0"))


@pytest.fixture
def ten_thousand(app: Flask, database_url: str) -> Iterator[str]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        seed(connection, "heavy", 10_000, random.Random(20261128))
        seed(connection, "warm-up", 3, random.Random(1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE tasks"))
    engine.dispose()
    yield "heavy"


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgresql"])
def test_exporting_10000_tasks_holds_a_page_not_the_document(
    client: FlaskClient, database_url: str, ten_thousand: str, tmp_path: Path,
) -> None:
    """The export of 10,000 tasks, streamed by a real server in a process of its own
    (tests/export_rss.py): its peak RSS grows by well under a third of the document's size
    (a page at a time), and the document is the list's pages and /tags exactly."""
    output = tmp_path / "export.json"
    run = subprocess.run(
        [sys.executable, "-m", "tests.export_rss", database_url, ten_thousand, str(output),
         "warm-up"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    print("export of 10,000 tasks:", json.dumps(measured))  # shown with `pytest -s`
    assert measured["status"] == 200 and measured["transfer_encoding"] == "chunked"
    size = output.stat().st_size
    assert measured["bytes"] == size > 5_000_000
    assert measured["growth_kib"] * 1024 < size / 3, measured
    document = json.loads(output.read_bytes())
    assert len(document["tasks"]) == 10_000
    assert_matches_the_api(client, document, ten_thousand)
