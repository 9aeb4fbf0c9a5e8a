"""What each request sends to PostgreSQL, counted on the wire, and that batching statements
into one query string neither mangles values nor leaks transactions.

The count comes from a recording proxy between the app and the server (`bench.pgwire`, the
benchmark's capture): it sees every query string that reaches PostgreSQL, including what
psycopg2 sends from C (`BEGIN`, `SET default_transaction_isolation`) and the pool's ping,
which SQLAlchemy's statement events never show.

A connection back in the pool moments ago is reused without a ping (todo/data/connection_check.py),
so a request right after another one sends only its own statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from bench.pgwire import QueryRecorder, RecordingProxy
from bench.sqlcapture import proxied_url, upstream_of
from tests.conftest import bearer, make_config, new_task
from todo import create_app
from todo.extensions import db

USER = "counted-user"
TIMEOUT = "SET LOCAL statement_timeout"


# Round trips are counted on PostgreSQL without a pooler in between; the other tests here
# check what batching could break, on each backend that batches.
on_postgresql = pytest.mark.parametrize("backend", ["postgresql"])


@contextmanager
def proxied_client(database_url: str, **environ: str) -> Iterator[tuple[FlaskClient, QueryRecorder]]:
    recorder = QueryRecorder()
    with RecordingProxy(upstream_of(database_url), recorder) as proxy:
        app = create_app(make_config(proxied_url(database_url, proxy.address), **environ))
        try:
            yield app.test_client(), recorder
        finally:
            with app.app_context():
                db.engine.dispose()


@pytest.fixture
def proxied(database_url: str) -> Iterator[tuple[FlaskClient, QueryRecorder]]:
    with proxied_client(database_url) as client_and_recorder:
        yield client_and_recorder


def round_trips(recorder: QueryRecorder, request: Callable[[], Any]) -> list[str]:
    recorder.clear_queries()
    request()
    assert recorder.problems() == []
    return recorder.queries()


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    return new_task(client, USER, title="counted", **fields)


@on_postgresql
def test_a_read_is_one_query(proxied: tuple[FlaskClient, QueryRecorder]) -> None:
    client, recorder = proxied
    task = create(client, tags=["a", "b"])
    for path in (f"/api/{USER}/tasks/{task['id']}", f"/api/{USER}/tasks",
                 f"/api/{USER}/tasks?search=count&sort_by=due_date", f"/api/{USER}/tags"):
        sent = round_trips(recorder, lambda path=path: client.get(path, headers=bearer(USER)))
        assert len(sent) == 1, sent
        # Searches run under their own, shorter limit (DB_SEARCH_TIMEOUT_MS).
        timeout = 1000 if "search=" in path else 5000
        assert sent[0].startswith(f"{TIMEOUT} = {timeout}; SELECT"), sent


@on_postgresql
def test_a_connection_idle_longer_than_the_setting_is_pinged_first(database_url: str) -> None:
    with proxied_client(database_url, DB_PING_AFTER_IDLE_SECONDS="1") as (client, recorder):
        task = create(client)
        path = f"/api/{USER}/tasks/{task['id']}"
        assert len(round_trips(recorder, lambda: client.get(path, headers=bearer(USER)))) == 1
        time.sleep(1.1)
        sent = round_trips(recorder, lambda: client.get(path, headers=bearer(USER)))
        assert len(sent) == 2, sent
        assert sent[0] == "SELECT 1"


@on_postgresql
def test_writes_batch_begin_lock_and_results_nobody_reads(
    proxied: tuple[FlaskClient, QueryRecorder],
) -> None:
    client, recorder = proxied
    task = create(client, tags=["a", "b"])
    url = f"/api/{USER}/tasks/{task['id']}"

    sent = round_trips(recorder, lambda: create(client, tags=["a", "b"]))
    # BEGIN + timeout + lock + the task count and the tags; insert + links + COMMIT
    assert len(sent) == 2, sent
    assert sent[0].startswith(f"BEGIN; {TIMEOUT}") and "INSERT INTO users" in sent[0]
    assert "INSERT INTO tasks" in sent[1] and sent[1].endswith("COMMIT")

    # Writes whose only result is their last statement are one query string without BEGIN,
    # which PostgreSQL runs as one transaction: timeout + lock + the statement.
    untagged = round_trips(recorder, lambda: create(client))
    assert len(untagged) == 1, untagged
    assert untagged[0].startswith(TIMEOUT) and "INSERT INTO tasks" in untagged[0]

    toggle = round_trips(recorder, lambda: client.patch(f"{url}/complete", headers=bearer(USER)))
    assert len(toggle) == 1, toggle
    assert toggle[0].startswith(TIMEOUT) and "UPDATE tasks" in toggle[0]

    patch = round_trips(recorder, lambda: client.patch(url, headers=bearer(USER),
                                                       json={"title": "renamed"}))
    # BEGIN + timeout + lock + read; UPDATE + COMMIT
    assert len(patch) == 2, patch
    assert patch[1].startswith("UPDATE tasks") and patch[1].endswith("COMMIT")

    retag = round_trips(recorder, lambda: client.patch(url, headers=bearer(USER),
                                                       json={"tags": ["b", "c"]}))
    # ... read; the tags; tag count (c is new); new tag + unlink a + link c + UPDATE + COMMIT
    assert len(retag) == 4, retag
    assert "DELETE FROM task_tags" in retag[3] and retag[3].endswith("COMMIT")

    delete = round_trips(recorder, lambda: client.delete(url, headers=bearer(USER)))
    assert len(delete) == 1, delete
    assert "DELETE FROM tasks" in delete[0] and "DELETE FROM tags" not in delete[0]

    task = create(client)
    conditional = round_trips(recorder, lambda: client.delete(
        f"/api/{USER}/tasks/{task['id']}", headers={**bearer(USER), "If-Match": "*"}))
    # BEGIN + timeout + lock + read; DELETE; COMMIT
    assert len(conditional) == 3, conditional


AWKWARD_TEXTS = ["100% done", "%s and %(title)s", "it's; DROP TABLE tasks; --", "back\\slash"]
AWKWARD_USER = "user%(id)s'; --"


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_values_that_look_like_sql_or_placeholders_survive_every_write(
    client: FlaskClient, text: str
) -> None:
    headers = bearer(AWKWARD_USER)
    base = f"/api/{AWKWARD_USER}/tasks"
    created = client.post(base, headers=headers,
                          json={"title": text, "description": text, "tags": [text, "x"]})
    assert created.status_code == 201, created.get_json()
    task = created.get_json()
    assert (task["title"], task["description"], task["tags"]) == (text, text, sorted([text, "x"]))
    url = f"{base}/{task['id']}"

    updated = client.patch(url, headers=headers, json={"title": text + "!", "tags": [text + "!"]})
    assert updated.status_code == 200
    toggled = client.patch(f"{url}/complete", headers=headers)
    assert toggled.status_code == 200

    stored = client.get(url, headers=headers).get_json()
    assert stored == {**toggled.get_json()}
    assert (stored["title"], stored["tags"], stored["completed"]) == (text + "!", [text + "!"], True)
    tags = client.get(f"/api/{AWKWARD_USER}/tags", headers=headers).get_json()
    assert [tag["name"] for tag in tags] == [text + "!"]

    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    assert client.get(f"/api/{AWKWARD_USER}/tags", headers=headers).get_json() == []


@pytest.mark.parametrize("backend", ["postgresql", "pgbouncer"])
def test_failed_writes_leave_no_transaction_open(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_TASKS_PER_USER"] = 1
    app.config["MAX_TAGS_PER_USER"] = 1
    headers = bearer(USER)
    task = create(client, tags=["only"])
    url = f"/api/{USER}/tasks/{task['id']}"
    failures = [
        client.post(f"/api/{USER}/tasks", headers=headers, json={"title": "over the limit"}),
        client.patch(url, headers=headers, json={"tags": ["only", "another"]}),
        client.patch(url, headers=headers, json={"title": "x"},
                     environ_overrides={"HTTP_IF_MATCH": '"stale"'}),
        client.delete(url, headers={**headers, "If-Match": '"stale"'}),
        client.patch(f"/api/{USER}/tasks/00000000-0000-4000-8000-000000000000/complete",
                     headers=headers),
    ]
    assert [response.status_code for response in failures] == [409, 409, 412, 412, 404]

    with app.app_context():
        with db.engine.connect() as connection:
            in_transaction = connection.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )).scalar_one()
    assert in_transaction == 0
    # Nothing of the failed writes was applied, and the pooled connections still work.
    stored = client.get(url, headers=headers).get_json()
    assert (stored["title"], stored["tags"]) == ("counted", ["only"])
    assert client.patch(f"{url}/complete", headers=headers).get_json()["completed"] is True
    assert client.get(f"/api/{USER}/tasks", headers=headers).get_json()["total"] == 1


@on_postgresql
def test_an_unchanged_poll_reads_only_the_change_number(
    proxied: tuple[FlaskClient, QueryRecorder],
) -> None:
    """A client polling an unchanged account costs one query: the user's change number."""
    client, recorder = proxied
    task = create(client, tags=["a"])
    for path in (f"/api/{USER}/tasks", f"/api/{USER}/tasks?status=pending&tags=a",
                 f"/api/{USER}/tags", f"/api/{USER}/changes"):
        first = client.get(path, headers=bearer(USER))
        assert first.status_code == 200 and first.headers["ETag"], path
        conditional = {**bearer(USER), "If-None-Match": first.headers["ETag"]}
        sent = round_trips(recorder, lambda path=path, headers=conditional: client.get(
            path, headers=headers))
        assert len(sent) == 1 and "FROM users" in sent[0] and "tasks" not in sent[0], sent
        assert client.get(path, headers=conditional).status_code == 304
    client.patch(f"/api/{USER}/tasks/{task['id']}", json={"title": "moved on"},
                 headers=bearer(USER))
    assert client.get(f"/api/{USER}/tasks", headers=conditional).status_code == 200


@on_postgresql
def test_a_batch_reads_only_what_its_operations_do_not_know_yet(
    proxied: tuple[FlaskClient, QueryRecorder],
) -> None:
    client, recorder = proxied
    create(client)  # the connection is set up
    operations = [{"op": "create", "ref": "first", "task": {"title": "t0", "tags": ["new"]}}]
    operations += [{"op": "create", "task": {"title": f"t{i}", "tags": ["NEW"]}}
                   for i in range(1, 50)]
    operations += [{"op": "complete", "id": "$first"}]

    sent = round_trips(recorder, lambda: client.post(
        f"/api/{USER}/tasks/batch", json={"operations": operations}, headers=bearer(USER)))

    # BEGIN + timeout + lock + the task count; the tag; the tag count (it is new); every
    # insert and link + the toggle; COMMIT. The later creates know the count and the tag.
    assert len(sent) == 5, sent
    assert sent[0].startswith(f"BEGIN; {TIMEOUT}") and "INSERT INTO users" in sent[0]
    assert sent[3].count("INSERT INTO tasks") == 50 and "UPDATE tasks" in sent[3]
    assert sent[4] == "COMMIT"
    listing = client.get(f"/api/{USER}/tasks?limit=100", headers=bearer(USER)).get_json()
    assert listing["total"] == 51
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == [
        {"name": "new", "usage_count": 50}]
