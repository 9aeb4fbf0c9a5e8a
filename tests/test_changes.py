"""The changes feed (`GET /api/{user_id}/changes`) and conditional reads (ETag, 304), through
HTTP, as a phone or a laptop keeping a copy of the tasks uses them."""

from __future__ import annotations

import base64
import random
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import assert_problem, bearer, new_task
from todo.data.models import TaskTombstone
from todo.extensions import db

USER = "user-a"
OTHER = "user-b"


def changes(client: FlaskClient, cursor: str | None = None, user_id: str = USER,
            **params: Any) -> dict[str, Any]:
    query = {**({"cursor": cursor} if cursor is not None else {}), **params}
    response = client.get(f"/api/{user_id}/changes", query_string=query,
                          headers=bearer(user_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"tasks", "deleted", "cursor", "has_more"}
    return body


def follow(client: FlaskClient, cursor: str | None, user_id: str = USER,
           limit: int = 100) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Follow cursors until `has_more` is false: every task and deletion seen, in order."""
    tasks: list[dict[str, Any]] = []
    deleted: list[dict[str, Any]] = []
    while True:
        page = changes(client, cursor, user_id, limit=limit)
        tasks += page["tasks"]
        deleted += page["deleted"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return tasks, deleted, cursor


def listed(client: FlaskClient, user_id: str = USER) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = client.get(f"/api/{user_id}/tasks?limit=100&offset={offset}",
                          headers=bearer(user_id)).get_json()
        tasks |= {task["id"]: task for task in page["data"]}
        offset += 100
        if offset >= page["total"]:
            return tasks


def send(client: FlaskClient, method: str, path: str, body: Any = None,
         user_id: str = USER) -> Any:
    response = client.open(f"/api/{user_id}/tasks{path}", method=method, json=body,
                           headers=bearer(user_id))
    assert response.status_code in (200, 201, 204), response.get_data(as_text=True)
    return response.get_json() if response.status_code != 204 else None


def test_from_the_beginning_the_feed_is_the_current_tasks(client: FlaskClient) -> None:
    created = [new_task(client, title=f"t{n}", tags=["home"]) for n in range(3)]
    send(client, "DELETE", f"/{created[0]['id']}")
    tasks, deleted, _ = follow(client, None)
    assert {task["id"]: task for task in tasks} == listed(client)
    assert deleted == []  # a new copy needs no deletions


def test_after_a_cursor_each_write_is_seen_once_in_its_latest_state(client: FlaskClient) -> None:
    edited, removed, kept = (new_task(client, title=name) for name in ("edit", "gone", "kept"))
    _, _, cursor = follow(client, None)
    send(client, "PATCH", f"/{edited['id']}", {"title": "edited once"})
    send(client, "PATCH", f"/{edited['id']}/complete")
    send(client, "PATCH", f"/{edited['id']}", {"tags": ["x"]})
    send(client, "DELETE", f"/{removed['id']}")
    fresh = new_task(client, title="fresh")
    flash = new_task(client, title="created and deleted")
    send(client, "DELETE", f"/{flash['id']}")

    tasks, deleted, cursor = follow(client, cursor)

    assert [task["id"] for task in tasks] == [edited["id"], fresh["id"]]
    assert tasks[0] == listed(client)[edited["id"]]  # the latest state, once
    assert [item["id"] for item in deleted] == [removed["id"], flash["id"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", item["deleted_at"])
               for item in deleted)
    assert kept["id"] not in {task["id"] for task in tasks}
    assert follow(client, cursor)[:2] == ([], [])  # nothing new: nothing again


@pytest.mark.parametrize("limit", [1, 2, 3, 500])
def test_pages_never_repeat_or_skip_a_change(client: FlaskClient, limit: int) -> None:
    _, _, cursor = follow(client, None)
    ids = [new_task(client, title=f"n{n}")["id"] for n in range(7)]
    send(client, "DELETE", f"/{ids[2]}")
    send(client, "PATCH", f"/{ids[0]}", {"priority": "High"})
    seen: list[str] = []
    while True:
        page = changes(client, cursor, limit=limit)
        assert len(page["tasks"]) + len(page["deleted"]) <= limit
        seen += [task["id"] for task in page["tasks"]] + [item["id"] for item in page["deleted"]]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    # Each change once; one per page shows the committed order: the creates of 1 and 3..6,
    # the deletion of 2, the edit of 0 (its latest write).
    assert sorted(seen) == sorted(ids)
    if limit == 1:
        assert seen == [ids[1], *ids[3:], ids[2], ids[0]]


def test_two_devices_and_a_third_writer_converge(client: FlaskClient) -> None:
    """Each device keeps a copy made only from the feed; after each round both copies equal
    the server's tasks, whatever was interleaved."""
    for seed in range(4):
        rng = random.Random(seed)
        devices = [{"copy": {}, "cursor": None} for _ in range(2)]
        for _ in range(6):
            for _ in range(rng.randint(1, 6)):
                ids = list(listed(client))
                choice = rng.random()
                if choice < 0.35 or not ids:
                    new_task(client, title=f"s{seed}-{rng.random():.6f}",
                             tags=rng.sample(["a", "b", "c"], rng.randint(0, 2)))
                elif choice < 0.6:
                    send(client, "PATCH", f"/{rng.choice(ids)}",
                         {"title": f"e{rng.random():.6f}", "tags": rng.sample(["a", "d"], 1)})
                elif choice < 0.75:
                    send(client, "PATCH", f"/{rng.choice(ids)}/complete")
                else:
                    send(client, "DELETE", f"/{rng.choice(ids)}")
                device = rng.choice(devices)  # one device syncs mid-round
                apply(client, device, limit=rng.choice([1, 3, 100]))
            for device in devices:
                apply(client, device, limit=rng.choice([2, 100]))
                assert device["copy"] == listed(client), seed


def apply(client: FlaskClient, device: dict[str, Any], limit: int) -> None:
    tasks, deleted, device["cursor"] = follow(client, device["cursor"], limit=limit)
    for task in tasks:
        device["copy"][task["id"]] = task
    for item in deleted:
        device["copy"].pop(item["id"], None)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_write_that_commits_late_is_not_skipped(app: Flask, client: FlaskClient) -> None:
    """A transaction that began (and stamped its row) first but commits after a reader has
    polled: the change numbers are assigned under the user's row lock, so nothing the reader
    was handed a cursor past can commit later."""
    early = new_task(client, title="early")
    late_target = new_task(client, title="late")
    _, _, cursor = follow(client, None)
    with app.app_context():
        engine = db.engine
    with engine.connect() as slow:
        transaction = slow.begin()
        slow.execute(sa.text("UPDATE tasks SET title = 'slow', updated_at = now() "
                             "WHERE id = :id"), {"id": late_target["id"]})
        done = threading.Event()

        def quick_write() -> None:  # waits for the slow one's lock on the user's row
            send(client, "PATCH", f"/{early['id']}", {"title": "quick"})
            done.set()

        writer = threading.Thread(target=quick_write)
        writer.start()
        assert not done.wait(0.5)
        polled = changes(client, cursor)  # neither write is visible yet
        assert (polled["tasks"], polled["deleted"]) == ([], [])
        cursor = polled["cursor"]
        transaction.commit()
    writer.join(10)
    assert done.is_set()
    tasks, _, _ = follow(client, cursor)
    assert [task["title"] for task in tasks] == ["slow", "quick"]


def test_a_cursor_older_than_the_kept_deletions_is_410(app: Flask, client: FlaskClient) -> None:
    task = new_task(client, title="x")
    _, _, old_cursor = follow(client, None)
    send(client, "DELETE", f"/{task['id']}")
    _, _, new_cursor = follow(client, old_cursor)
    with app.app_context():
        db.session.execute(sa.text(
            "UPDATE users SET tombstones_purged_through = change_number WHERE id = :id"
        ), {"id": USER})
        db.session.commit()
    response = client.get(f"/api/{USER}/changes?cursor={old_cursor}", headers=bearer(USER))
    problem = assert_problem(response, 410)
    assert "without a cursor" in problem["detail"]
    assert changes(client, new_cursor)["tasks"] == []  # a current cursor still works
    assert changes(client)["tasks"] == []  # and so does starting again


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_foreign_made_up_and_malformed_cursors_are_400(client: FlaskClient) -> None:
    new_task(client, title="mine")
    new_task(client, OTHER, title="theirs")
    foreign = changes(client, user_id=OTHER)["cursor"]
    mine = changes(client)["cursor"]
    mark = base64.urlsafe_b64decode(mine + "=" * (-len(mine) % 4)).decode().rsplit(".", 1)[1]
    for cursor in (foreign, "garbage", "", "a" * 101, _cursor(f"1.999.{mark}"),
                   _cursor(f"2.1.{mark}"), _cursor(f"1.-1.{mark}"), _cursor(f"1.01.{mark}"),
                   mine + "x", "%00"):
        response = client.get(f"/api/{USER}/changes", query_string={"cursor": cursor},
                              headers=bearer(USER))
        problem = assert_problem(response, 400)
        assert "cursor" in problem["errors"]["query"], cursor


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "since=1", "limit=1&limit=2"])
def test_bad_parameters_are_400_naming_them(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/{USER}/changes?{query}", headers=bearer(USER))
    problem = assert_problem(response, 400)
    assert problem["errors"]["query"]


def test_another_users_feed_is_403(client: FlaskClient) -> None:
    response = client.get(f"/api/{OTHER}/changes", headers=bearer(USER))
    assert_problem(response, 403)


@pytest.mark.parametrize("path", ["/tasks", "/tasks?status=pending", "/tags", "/tags?q=h",
                                  "/changes", "/changes?limit=5"])
def test_an_unchanged_collection_is_304_until_any_task_changes(
    client: FlaskClient, path: str
) -> None:
    task = new_task(client, title="watched", tags=["home"])
    url = f"/api/{USER}{path}"
    first = client.get(url, headers=bearer(USER))
    etag = first.headers["ETag"]
    for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get(url, headers={**bearer(USER), "If-None-Match": condition})
        assert again.status_code == 304, condition
        assert again.get_data() == b"" and "Content-Type" not in again.headers
        assert again.headers["ETag"] == etag
    assert client.get(url, headers={**bearer(USER), "If-None-Match": '"stale"'}).status_code == 200
    send(client, "PATCH", f"/{task['id']}/complete")
    changed = client.get(url, headers={**bearer(USER), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    # Another user's writes do not change this user's validators.
    unchanged = changed.headers["ETag"]
    new_task(client, OTHER, title="elsewhere")
    assert client.get(url, headers={**bearer(USER), "If-None-Match": unchanged}
                      ).status_code == 304


def test_a_task_is_304_while_unchanged(client: FlaskClient) -> None:
    task = new_task(client, title="one")
    url = f"/api/{USER}/tasks/{task['id']}"
    etag = client.get(url, headers=bearer(USER)).headers["ETag"]
    assert client.get(url, headers={**bearer(USER), "If-None-Match": etag}).status_code == 304
    send(client, "PATCH", f"/{task['id']}", {"title": "two"})
    assert client.get(url, headers={**bearer(USER), "If-None-Match": etag}).status_code == 200


def test_validators_differ_between_queries_and_endpoints(client: FlaskClient) -> None:
    new_task(client, title="x")
    etags = {client.get(f"/api/{USER}{path}", headers=bearer(USER)).headers["ETag"]
             for path in ("/tasks", "/tasks?limit=5", "/tags", "/changes")}
    assert len(etags) == 4


def test_flask_purge_forgets_old_deletions_and_old_cursors_get_410(
    app: Flask, client: FlaskClient
) -> None:
    old, recent = new_task(client, title="old"), new_task(client, title="recent")
    _, _, before_deletions = follow(client, None)
    send(client, "DELETE", f"/{old['id']}")
    _, _, between = follow(client, before_deletions)
    send(client, "DELETE", f"/{recent['id']}")
    new_task(client, OTHER, title="other user's")
    with app.app_context():
        db.session.execute(  # the first deletion happened 31 days ago
            sa.update(TaskTombstone).where(TaskTombstone.task_id == uuid.UUID(old["id"]))
            .values(deleted_at=datetime.now(UTC) - timedelta(days=31))
        )
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["purge"])

    assert result.exit_code == 0, result.output
    assert "tombstones: 1 expired deleted" in result.output
    assert_problem(client.get(f"/api/{USER}/changes?cursor={before_deletions}",
                              headers=bearer(USER)), 410)
    _, deleted, _ = follow(client, between)  # the recent deletion is still there
    assert [item["id"] for item in deleted] == [recent["id"]]


def test_a_deletion_forgets_the_users_expired_deletions(app: Flask, client: FlaskClient) -> None:
    first, second = new_task(client, title="first"), new_task(client, title="second")
    _, _, cursor = follow(client, None)
    send(client, "DELETE", f"/{first['id']}")
    with app.app_context():
        db.session.execute(
            sa.update(TaskTombstone).values(deleted_at=datetime.now(UTC) - timedelta(days=31))
        )
        db.session.commit()
    send(client, "DELETE", f"/{second['id']}")  # purges the expired one as it goes
    with app.app_context():
        kept = db.session.execute(sa.select(TaskTombstone.task_id)).scalars().all()
    assert [str(task_id) for task_id in kept] == [second["id"]]
    assert_problem(client.get(f"/api/{USER}/changes?cursor={cursor}", headers=bearer(USER)), 410)
