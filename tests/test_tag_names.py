"""Each task's stored tag names (`tasks.tag_names`, what reads show) always match its links in
task_tags (what tag filters and tag usage count), after every kind of write."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task
from todo.extensions import db
from todo.tasks.representation import sort_tag_names

USER = "named-user"


def stored_and_linked(app: Flask) -> dict[str, tuple[list[str], list[str]]]:
    """task id -> (its stored tag names, the names its links point to in the API's order)."""
    with app.app_context(), db.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT id, tag_names FROM tasks")).all()
        links = connection.execute(sa.text(
            "SELECT task_tags.task_id, tags.name FROM task_tags"
            " JOIN tags ON tags.id = task_tags.tag_id"
        )).all()
    linked: dict[str, list[str]] = {}
    for task_id, name in links:
        linked.setdefault(str(task_id).replace("-", ""), []).append(name)
    result = {}
    for task_id, names in stored:
        key = str(task_id).replace("-", "")
        value: Any = names if isinstance(names, list) else json.loads(names)
        result[key] = (value, sort_tag_names(linked.get(key, [])))
    return result


def assert_consistent(app: Flask) -> None:
    for task_id, (stored, linked) in stored_and_linked(app).items():
        assert stored == linked, task_id


def test_stored_names_follow_every_write(app: Flask, client: FlaskClient) -> None:
    headers = bearer(USER)
    base = f"/api/{USER}/tasks"
    first = new_task(client, USER, title="first", tags=["Work", "home", "Ärger"])
    second = new_task(client, USER, title="second", tags=["work", "Urgent"])  # "work" is "Work"
    assert second["tags"] == ["Urgent", "Work"]
    plain = new_task(client, USER, title="plain")
    assert_consistent(app)

    url = f"{base}/{first['id']}"
    changed = client.patch(url, headers=headers, json={"tags": ["HOME", "new one"]})
    assert changed.get_json()["tags"] == ["home", "new one"]
    assert client.put(f"{base}/{plain['id']}", headers=headers,
                      json={"title": "plain, tagged", "tags": ["b", "A"]}).status_code == 200
    assert client.patch(f"{url}/complete", headers=headers).status_code == 200
    assert client.patch(url, headers=headers, json={"title": "renamed"}).status_code == 200
    assert_consistent(app)

    # What every read shows is what was answered.
    shown = {task["id"]: task["tags"] for task in
             client.get(base, headers=headers).get_json()["data"]}
    assert shown == {first["id"]: ["home", "new one"], second["id"]: ["Urgent", "Work"],
                     plain["id"]: ["A", "b"]}
    assert client.get(url, headers=headers).get_json()["tags"] == ["home", "new one"]

    # Deleting the only task using "Urgent" and "Work" prunes them; a new spelling is then new.
    assert client.delete(f"{base}/{second['id']}", headers=headers).status_code == 204
    third = new_task(client, USER, title="third", tags=["WORK"])
    assert third["tags"] == ["WORK"]
    assert client.patch(f"{base}/{plain['id']}", headers=headers,
                        json={"tags": []}).get_json()["tags"] == []
    assert_consistent(app)
    names_in_use = {name for stored, _ in stored_and_linked(app).values() for name in stored}
    assert names_in_use == {"home", "new one", "WORK"}
