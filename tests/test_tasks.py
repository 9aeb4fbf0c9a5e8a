"""Tasks through HTTP as the frontend calls them: create, get, PUT/PATCH, complete, delete.

Listing filters, the tags endpoint's ordering and `If-Match` have their own test files; the
validation rules one by one are in test_validation.py.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import assert_problem, bearer, new_task
from todo.data.models import User
from todo.extensions import db

USER = "user-a"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
TASK_FIELDS = {
    "id", "user_id", "title", "description", "completed", "priority", "due_date", "tags",
    "created_at", "updated_at",
}
METHODS = ["PUT", "PATCH"]


# ---------------------------------------------------------------- helpers


def tasks_url(user_id: str = USER) -> str:
    return f"/api/{user_id}/tasks"


def task_url(task_id: str, user_id: str = USER) -> str:
    return f"/api/{user_id}/tasks/{task_id}"


def send(client: FlaskClient, method: str, url: str, body: Any = None,
         user_id: str = USER) -> TestResponse:
    """A request with a JSON body (or none when `body` is None), authenticated as `user_id`."""
    if body is None:
        return client.open(url, method=method, headers=bearer(user_id))
    return client.open(url, method=method, json=body, headers=bearer(user_id))


def fetch(client: FlaskClient, task_id: str, user_id: str = USER) -> dict[str, Any]:
    response = client.get(task_url(task_id, user_id), headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    task: dict[str, Any] = response.get_json()
    return task


def tag_usage(client: FlaskClient, user_id: str = USER) -> list[dict[str, Any]]:
    response = client.get(f"/api/{user_id}/tags", headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    tags: list[dict[str, Any]] = response.get_json()
    return tags


def listed_ids(client: FlaskClient, user_id: str = USER) -> set[str]:
    response = client.get(f"{tasks_url(user_id)}?limit=100", headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    return {task["id"] for task in response.get_json()["data"]}


def assert_ok_task(response: TestResponse, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/json"
    task: dict[str, Any] = response.get_json()
    assert set(task) == TASK_FIELDS
    return task


def parse_timestamp(text: str) -> datetime:
    assert TIMESTAMP.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ---------------------------------------------------------------- create


def test_create_returns_201_with_the_full_task(client: FlaskClient) -> None:
    body = {
        "title": "Buy milk",
        "description": "2 litres",
        "priority": "High",
        "due_date": "2026-12-01",
        "tags": ["home", "errands"],
    }
    response = client.post(tasks_url(), json=body, headers=bearer())

    task = assert_ok_task(response, 201)
    assert task == {
        "id": task["id"],
        "user_id": USER,
        "title": "Buy milk",
        "description": "2 litres",
        "completed": False,
        "priority": "High",
        "due_date": "2026-12-01",
        "tags": ["errands", "home"],
        "created_at": task["created_at"],
        "updated_at": task["updated_at"],
    }
    assert uuid.UUID(task["id"]).version == 4
    assert str(uuid.UUID(task["id"])) == task["id"]
    assert response.headers["Location"].endswith(task_url(task["id"]))
    assert re.fullmatch(r'"[^"]+"', response.headers["ETag"])


def test_location_gets_the_same_task_with_the_same_etag(client: FlaskClient) -> None:
    created = client.post(tasks_url(), json={"title": "Call mum", "tags": ["family"]},
                          headers=bearer())
    assert created.status_code == 201

    got = client.get(created.headers["Location"], headers=bearer())

    assert got.status_code == 200
    assert got.get_json() == created.get_json()
    assert got.headers["ETag"] == created.headers["ETag"]


def test_create_defaults(client: FlaskClient) -> None:
    task = assert_ok_task(client.post(tasks_url(), json={"title": "Only a title"},
                                      headers=bearer()), 201)

    assert task["title"] == "Only a title"
    assert task["priority"] == "Medium"
    assert task["completed"] is False
    assert task["description"] is None
    assert task["due_date"] is None
    assert task["tags"] == []
    assert fetch(client, task["id"]) == task


def test_each_task_gets_its_own_uuid(client: FlaskClient) -> None:
    ids = {new_task(client, title="same title")["id"] for _ in range(3)}

    assert len(ids) == 3
    assert all(uuid.UUID(task_id).version == 4 for task_id in ids)


def test_timestamps_are_utc_iso_8601_with_z_and_microseconds(client: FlaskClient) -> None:
    before = datetime.now(UTC)
    task = new_task(client)
    after = datetime.now(UTC)

    created_at = parse_timestamp(task["created_at"])
    assert task["updated_at"] == task["created_at"]
    # A second of slack for a database clock that differs from ours.
    assert before.timestamp() - 1 <= created_at.timestamp() <= after.timestamp() + 1
    stored = fetch(client, task["id"])
    assert stored["created_at"] == stored["updated_at"] == task["created_at"]


# ---------------------------------------------------------------- get


def test_get_returns_the_task_with_an_etag(client: FlaskClient) -> None:
    task = new_task(client, description="details", tags=["x"])

    response = client.get(task_url(task["id"]), headers=bearer())

    assert assert_ok_task(response) == task
    assert response.headers["ETag"]


def test_get_accepts_an_uppercase_uuid(client: FlaskClient) -> None:
    task = new_task(client)

    response = client.get(task_url(task["id"].upper()), headers=bearer())

    assert assert_ok_task(response) == task


SOME_UUID = "5b9a4a8e-3f0c-4d7e-9a57-2f1c6e0b8d41"
NON_UUID_IDS = [
    "not-a-uuid",
    "123",
    "0",
    SOME_UUID.replace("-", ""),
    f"{SOME_UUID}0",
    SOME_UUID[:-1],
    f"{{{SOME_UUID}}}",
    f"urn:uuid:{SOME_UUID}",
    "g" * 8 + SOME_UUID[8:],
    # `$` in a pattern also matches before a final newline.
    f"{SOME_UUID}%0A",
    f"{SOME_UUID}%0D%0A",
    f"{SOME_UUID}%20",
    f"%0A{SOME_UUID}",
]
TASK_ID_ENDPOINTS = [
    ("GET", "", None),
    ("PUT", "", {"title": "New"}),
    ("PATCH", "", {"title": "New"}),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
]


@pytest.mark.parametrize(("method", "suffix", "body"), TASK_ID_ENDPOINTS)
@pytest.mark.parametrize("task_id", NON_UUID_IDS)
def test_a_task_id_that_is_not_a_uuid_is_404(
    client: FlaskClient, method: str, suffix: str, body: Any, task_id: str
) -> None:
    new_task(client)
    url = task_url(task_id) + suffix

    problem = assert_problem(send(client, method, url, body), 404)

    assert problem["title"] == "Not Found"
    assert problem["instance"] == urllib.parse.unquote(url)


@pytest.mark.parametrize(("method", "suffix", "body"), TASK_ID_ENDPOINTS)
def test_an_unknown_uuid_is_404(client: FlaskClient, method: str, suffix: str, body: Any) -> None:
    task = new_task(client)

    assert_problem(send(client, method, task_url(str(uuid.uuid4())) + suffix, body), 404)
    assert fetch(client, task["id"]) == task


# ---------------------------------------------------------------- PUT and PATCH

FULL_TASK = {
    "title": "Original",
    "description": "original description",
    "priority": "Low",
    "due_date": "2026-03-01",
    "tags": ["alpha", "beta"],
}
CHANGES = [
    pytest.param({"title": "Renamed"}, {"title": "Renamed"}, id="title"),
    pytest.param({"description": "new text"}, {"description": "new text"}, id="description"),
    pytest.param({"completed": True}, {"completed": True}, id="completed"),
    pytest.param({"priority": "high"}, {"priority": "High"}, id="priority"),
    pytest.param({"due_date": "2025-01-31"}, {"due_date": "2025-01-31"}, id="due_date"),
    pytest.param({"tags": ["gamma"]}, {"tags": ["gamma"]}, id="tags"),
    pytest.param({"description": None}, {"description": None}, id="description-null"),
    pytest.param({"due_date": None}, {"due_date": None}, id="due_date-null"),
    pytest.param({"tags": []}, {"tags": []}, id="tags-empty"),
    pytest.param(
        {"title": "  All  ", "description": "d", "completed": True, "priority": "MEDIUM",
         "due_date": "2027-07-07", "tags": ["Zeta", "delta"]},
        {"title": "All", "description": "d", "completed": True, "priority": "Medium",
         "due_date": "2027-07-07", "tags": ["delta", "Zeta"]},
        id="every-field",
    ),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("changes", "expected"), CHANGES)
def test_put_and_patch_accept_any_subset(
    client: FlaskClient, method: str, changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    task = new_task(client, **FULL_TASK)

    response = send(client, method, task_url(task["id"]), changes)

    updated = assert_ok_task(response)
    assert updated == {**task, **expected, "updated_at": updated["updated_at"]}
    assert parse_timestamp(updated["updated_at"]) > parse_timestamp(task["updated_at"])
    assert updated["created_at"] == task["created_at"]
    assert response.headers["ETag"]
    assert fetch(client, task["id"]) == updated


@pytest.mark.parametrize("method", METHODS)
def test_update_response_and_etag_match_a_later_get(client: FlaskClient, method: str) -> None:
    task = new_task(client, **FULL_TASK)

    response = send(client, method, task_url(task["id"]), {"title": "Changed", "tags": ["b", "A"]})
    got = client.get(task_url(task["id"]), headers=bearer())

    assert response.status_code == 200
    assert got.get_json() == response.get_json()
    assert got.headers["ETag"] == response.headers["ETag"]


@pytest.mark.parametrize("method", METHODS)
def test_each_change_moves_updated_at_forward(client: FlaskClient, method: str) -> None:
    task = new_task(client)
    stamps = [task["updated_at"]]

    for changes in ({"title": "one"}, {"priority": "High"}, {"tags": ["t"]}, {"tags": []}):
        updated = assert_ok_task(send(client, method, task_url(task["id"]), changes))
        stamps.append(updated["updated_at"])

    assert [parse_timestamp(s) for s in stamps] == sorted(parse_timestamp(s) for s in stamps)
    assert len(set(stamps)) == len(stamps)
    assert fetch(client, task["id"])["created_at"] == task["created_at"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("body", [{}, None], ids=["empty-object", "no-body"])
def test_an_empty_body_changes_nothing_and_returns_200(
    client: FlaskClient, method: str, body: Any
) -> None:
    task = new_task(client, **FULL_TASK)
    before = client.get(task_url(task["id"]), headers=bearer())

    response = send(client, method, task_url(task["id"]), body)

    assert assert_ok_task(response) == task
    assert response.headers["ETag"] == before.headers["ETag"]
    after = client.get(task_url(task["id"]), headers=bearer())
    assert after.get_data() == before.get_data()


UNCHANGED_VALUES = [
    pytest.param({"title": "Original"}, id="title"),
    pytest.param({"title": "  Original \t"}, id="title-with-spaces"),
    pytest.param({"description": "original description"}, id="description"),
    pytest.param({"completed": False}, id="completed"),
    pytest.param({"priority": "Low"}, id="priority"),
    pytest.param({"priority": "low"}, id="priority-other-case"),
    pytest.param({"due_date": "2026-03-01"}, id="due_date"),
    pytest.param({"tags": ["beta", "alpha"]}, id="tags-other-order"),
    pytest.param({"tags": ["ALPHA", "Beta", "beta"]}, id="tags-other-case"),
    pytest.param({**FULL_TASK, "completed": False}, id="every-field"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("changes", UNCHANGED_VALUES)
def test_resending_current_values_does_not_touch_updated_at(
    client: FlaskClient, method: str, changes: dict[str, Any]
) -> None:
    task = new_task(client, **FULL_TASK)
    before = client.get(task_url(task["id"]), headers=bearer())

    response = send(client, method, task_url(task["id"]), changes)

    assert assert_ok_task(response) == task
    after = client.get(task_url(task["id"]), headers=bearer())
    assert after.get_data() == before.get_data()
    assert after.headers["ETag"] == before.headers["ETag"]


@pytest.mark.parametrize("method", METHODS)
def test_tags_replace_the_whole_set(client: FlaskClient, method: str) -> None:
    task = new_task(client, tags=["alpha", "beta"])

    response = send(client, method, task_url(task["id"]), {"tags": ["beta", "gamma"]})

    updated = assert_ok_task(response)
    assert updated["tags"] == ["beta", "gamma"]
    assert fetch(client, task["id"])["tags"] == ["beta", "gamma"]
    assert sorted(tag["name"] for tag in tag_usage(client)) == ["beta", "gamma"]


@pytest.mark.parametrize("method", METHODS)
def test_empty_tags_clear_them(client: FlaskClient, method: str) -> None:
    task = new_task(client, tags=["alpha", "beta"])

    updated = assert_ok_task(send(client, method, task_url(task["id"]), {"tags": []}))

    assert updated["tags"] == []
    assert fetch(client, task["id"])["tags"] == []
    assert tag_usage(client) == []


@pytest.mark.parametrize("method", METHODS)
def test_omitting_tags_keeps_them(client: FlaskClient, method: str) -> None:
    task = new_task(client, tags=["alpha", "beta"])

    updated = assert_ok_task(send(client, method, task_url(task["id"]), {"title": "other"}))

    assert updated["tags"] == ["alpha", "beta"]
    assert fetch(client, task["id"])["tags"] == ["alpha", "beta"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", ["description", "due_date"])
def test_null_clears_description_and_due_date(
    client: FlaskClient, method: str, field: str
) -> None:
    task = new_task(client, **FULL_TASK)

    updated = assert_ok_task(send(client, method, task_url(task["id"]), {field: None}))

    assert updated[field] is None
    assert fetch(client, task["id"]) == {**task, field: None, "updated_at": updated["updated_at"]}


@pytest.mark.parametrize("method", METHODS)
def test_title_null_is_400_and_changes_nothing(client: FlaskClient, method: str) -> None:
    task = new_task(client, **FULL_TASK)

    problem = assert_problem(send(client, method, task_url(task["id"]), {"title": None}), 400)

    assert list(problem["errors"]["json"]) == ["title"]
    assert fetch(client, task["id"]) == task


@pytest.mark.parametrize("method", METHODS)
def test_completed_can_be_set_through_put_and_patch(client: FlaskClient, method: str) -> None:
    task = new_task(client)

    done = assert_ok_task(send(client, method, task_url(task["id"]), {"completed": True}))
    undone = assert_ok_task(send(client, method, task_url(task["id"]), {"completed": False}))

    assert done["completed"] is True
    assert undone["completed"] is False
    assert fetch(client, task["id"]) == undone


# ---------------------------------------------------------------- complete


def complete(client: FlaskClient, task_id: str, body: Any = None) -> dict[str, Any]:
    return assert_ok_task(send(client, "PATCH", task_url(task_id) + "/complete", body))


def test_complete_without_a_body_toggles(client: FlaskClient) -> None:
    task = new_task(client, **FULL_TASK)

    first = complete(client, task["id"])
    second = complete(client, task["id"])

    assert first == {**task, "completed": True, "updated_at": first["updated_at"]}
    assert second == {**task, "completed": False, "updated_at": second["updated_at"]}
    assert task["updated_at"] < first["updated_at"] < second["updated_at"]
    assert fetch(client, task["id"]) == second


def test_complete_with_an_empty_object_toggles_too(client: FlaskClient) -> None:
    # `{}` carries no `completed`, so it is read as "no value given": toggle.
    task = new_task(client)

    assert complete(client, task["id"], {})["completed"] is True
    assert complete(client, task["id"], {})["completed"] is False


@pytest.mark.parametrize("value", [True, False])
def test_complete_with_a_value_sets_it_idempotently(client: FlaskClient, value: bool) -> None:
    task = new_task(client)
    if not value:
        task = complete(client, task["id"])  # start from the opposite state

    first = complete(client, task["id"], {"completed": value})
    retried = complete(client, task["id"], {"completed": value})

    assert first == {**task, "completed": value, "updated_at": first["updated_at"]}
    assert first["updated_at"] > task["updated_at"]
    assert retried == first
    assert fetch(client, task["id"]) == first


def test_complete_response_matches_a_later_get(client: FlaskClient) -> None:
    task = new_task(client, tags=["x"])

    response = send(client, "PATCH", task_url(task["id"]) + "/complete")
    got = client.get(task_url(task["id"]), headers=bearer())

    assert response.status_code == 200
    assert got.get_json() == response.get_json()


# ---------------------------------------------------------------- delete


def test_delete_is_204_with_an_empty_body_and_the_task_is_gone(client: FlaskClient) -> None:
    task = new_task(client, tags=["gone"])
    kept = new_task(client)

    response = client.delete(task_url(task["id"]), headers=bearer())

    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers  # not werkzeug's default text/html
    assert_problem(client.get(task_url(task["id"]), headers=bearer()), 404)
    assert listed_ids(client) == {kept["id"]}


@pytest.mark.parametrize(("method", "suffix", "body"), TASK_ID_ENDPOINTS)
def test_a_deleted_task_is_404_everywhere(
    client: FlaskClient, method: str, suffix: str, body: Any
) -> None:
    task = new_task(client)
    assert client.delete(task_url(task["id"]), headers=bearer()).status_code == 204

    problem = assert_problem(send(client, method, task_url(task["id"]) + suffix, body), 404)

    assert problem["detail"] == "Task not found."
    assert listed_ids(client) == set()


# ---------------------------------------------------------------- users


def user_exists(app: Flask, user_id: str) -> bool:
    with app.app_context():
        return db.session.execute(
            sa.select(sa.func.count()).select_from(User).where(User.id == user_id)
        ).scalar_one() == 1


def test_a_users_first_write_creates_the_user(app: Flask, client: FlaskClient) -> None:
    user_id = "better-auth-Xy7_abc"  # opaque, not a UUID
    assert not user_exists(app, user_id)
    assert client.get(tasks_url(user_id), headers=bearer(user_id)).get_json()["data"] == []

    task = new_task(client, user_id)

    assert user_exists(app, user_id)
    assert task["user_id"] == user_id
    assert fetch(client, task["id"], user_id) == task
    new_task(client, user_id)  # later writes reuse the row
    assert len(listed_ids(client, user_id)) == 2


def test_a_second_users_data_is_independent(client: FlaskClient) -> None:
    first = new_task(client, "user-a", title="A's task", tags=["shared"])
    second = new_task(client, "user-b", title="B's task", tags=["shared"])

    assert second["user_id"] == "user-b"
    assert listed_ids(client, "user-a") == {first["id"]}
    assert listed_ids(client, "user-b") == {second["id"]}
    deleted = client.delete(task_url(first["id"], "user-a"), headers=bearer("user-a"))
    assert deleted.status_code == 204
    assert fetch(client, second["id"], "user-b") == second
    assert tag_usage(client, "user-b") == [{"name": "shared", "usage_count": 1}]


# ---------------------------------------------------------------- tags


def test_tags_are_returned_sorted_case_insensitively(client: FlaskClient) -> None:
    names = ["banana", "Apple", "cherry", "apple pie", "Banana split", "2fa"]
    expected = ["2fa", "Apple", "apple pie", "banana", "Banana split", "cherry"]

    task = new_task(client, tags=names)
    assert task["tags"] == expected
    assert fetch(client, task["id"])["tags"] == expected

    updated = assert_ok_task(send(client, "PATCH", task_url(task["id"]),
                                  {"tags": ["zulu", "Yankee", "x-ray"]}))
    assert updated["tags"] == ["x-ray", "Yankee", "zulu"]
    assert fetch(client, task["id"])["tags"] == ["x-ray", "Yankee", "zulu"]


def test_the_first_spelling_of_a_tag_is_kept(client: FlaskClient) -> None:
    first = new_task(client, tags=["Work"])
    second = new_task(client, tags=["work"])
    third = new_task(client)
    updated = assert_ok_task(send(client, "PATCH", task_url(third["id"]), {"tags": ["WORK"]}))

    assert second["tags"] == ["Work"]
    assert updated["tags"] == ["Work"]
    assert fetch(client, first["id"])["tags"] == ["Work"]
    assert fetch(client, second["id"])["tags"] == ["Work"]
    assert tag_usage(client) == [{"name": "Work", "usage_count": 3}]


def test_resending_a_tag_in_another_case_does_not_rename_it(client: FlaskClient) -> None:
    task = new_task(client, tags=["Work"])

    updated = assert_ok_task(send(client, "PUT", task_url(task["id"]), {"tags": ["work"]}))

    assert updated["tags"] == ["Work"]
    assert updated["updated_at"] == task["updated_at"]
    assert tag_usage(client) == [{"name": "Work", "usage_count": 1}]


def test_tags_used_by_no_task_disappear(client: FlaskClient) -> None:
    one = new_task(client, tags=["home", "work"])
    two = new_task(client, tags=["work"])

    send(client, "PATCH", task_url(one["id"]), {"tags": ["home"]})
    assert sorted(tag["name"] for tag in tag_usage(client)) == ["home", "work"]

    send(client, "PATCH", task_url(two["id"]), {"tags": []})
    assert tag_usage(client) == [{"name": "home", "usage_count": 1}]

    assert client.delete(task_url(one["id"]), headers=bearer()).status_code == 204
    assert tag_usage(client) == []


def test_a_tag_gone_from_every_task_takes_a_new_spelling(client: FlaskClient) -> None:
    task = new_task(client, tags=["Work"])
    send(client, "PATCH", task_url(task["id"]), {"tags": []})

    again = new_task(client, tags=["WORK"])

    assert again["tags"] == ["WORK"]
    assert tag_usage(client) == [{"name": "WORK", "usage_count": 1}]
