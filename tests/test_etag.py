"""ETags on task responses and conditional writes with `If-Match` (optimistic concurrency)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task
from todo.tasks import writes

USER = "user-a"
OTHER = "user-b"
PROBLEM = "application/problem+json"
STRONG_ETAG = re.compile(r'^"[^"\s]+"$')
Task = dict[str, Any]


def task_url(task_id: str, user: str = USER) -> str:
    return f"/api/{user}/tasks/{task_id}"


def fetch(client: FlaskClient, task_id: str) -> tuple[Task, str]:
    """The task as GET returns it, and its ETag."""
    response = client.get(task_url(task_id), headers=bearer(USER))
    assert response.status_code == 200
    return response.get_json(), response.headers["ETag"]


def write(client: FlaskClient, method: str, task_id: str, body: Any = None,
          if_match: str | None = None, user: str = USER) -> Any:
    headers = bearer(user)
    if if_match is not None:
        headers["If-Match"] = if_match
    return client.open(task_url(task_id, user), method=method, json=body, headers=headers)


def assert_etag_of(response: Any, client: FlaskClient, task_id: str) -> str:
    """The response carries a strong ETag, and a GET now answers the same body and ETag."""
    etag: str = response.headers["ETag"]
    assert STRONG_ETAG.match(etag), etag
    assert fetch(client, task_id) == (response.get_json(), etag)
    return etag


def assert_precondition_failed(response: Any) -> None:
    assert response.status_code == 412
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 412 and isinstance(body["detail"], str) and body["detail"]
    assert "ETag" not in response.headers


@pytest.fixture
def task(client: FlaskClient) -> Task:
    return new_task(client, USER, title="original", description="text", priority="Low",
                    due_date="2026-12-01", tags=["work", "home"])


# ---------------------------------------------------------------- ETag on responses


def test_create_returns_the_etag_get_returns(client: FlaskClient) -> None:
    response = client.post(f"/api/{USER}/tasks", json={"title": "x", "tags": ["b", "A"]},
                           headers=bearer(USER))
    assert response.status_code == 201
    assert_etag_of(response, client, response.get_json()["id"])


def test_create_with_an_existing_tag_spelled_differently(client: FlaskClient) -> None:
    new_task(client, USER, tags=["Work"])
    response = client.post(f"/api/{USER}/tasks", json={"title": "x", "tags": ["WORK", "new"]},
                           headers=bearer(USER))
    assert response.status_code == 201 and response.get_json()["tags"] == ["new", "Work"]
    assert_etag_of(response, client, response.get_json()["id"])


def test_get_etag_is_stable_and_per_task(client: FlaskClient, task: Task) -> None:
    _, etag = fetch(client, task["id"])
    assert STRONG_ETAG.match(etag)
    assert fetch(client, task["id"])[1] == etag
    twin = new_task(client, USER, title="original", description="text", priority="Low",
                    due_date="2026-12-01", tags=["work", "home"])
    assert fetch(client, twin["id"])[1] != etag


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "", {"title": "changed"}),
    ("PATCH", "", {"title": "changed"}),
    ("PATCH", "/complete", None),
    ("PATCH", "/complete", {"completed": True}),
])
def test_every_write_returns_the_new_etag(
    client: FlaskClient, task: Task, method: str, path: str, body: Any
) -> None:
    _, before = fetch(client, task["id"])
    response = client.open(task_url(task["id"]) + path, method=method, json=body,
                           headers=bearer(USER))
    assert response.status_code == 200
    assert assert_etag_of(response, client, task["id"]) != before


CHANGES = [
    {"title": "renamed"},
    {"title": "Original"},  # case alone is a change
    {"description": "other text"},
    {"description": None},
    {"completed": True},
    {"priority": "High"},
    {"due_date": "2026-12-02"},
    {"due_date": None},
    {"tags": ["work"]},
    {"tags": ["work", "home", "urgent"]},
    {"tags": []},
    {"title": "renamed", "tags": ["other"], "priority": "medium"},
]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("change", CHANGES)
def test_etag_changes_when_any_field_changes(
    client: FlaskClient, task: Task, method: str, change: dict[str, Any]
) -> None:
    before_task, before = fetch(client, task["id"])
    response = write(client, method, task["id"], change)
    assert response.status_code == 200
    after = assert_etag_of(response, client, task["id"])
    assert after != before
    assert response.get_json()["updated_at"] > before_task["updated_at"]


@pytest.mark.parametrize("change", CHANGES)
def test_etag_follows_the_content_even_within_one_timestamp(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    """A strong ETag must change with the representation, not only with updated_at."""
    frozen = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    monkeypatch.setattr(writes, "utc_now", lambda: frozen)
    task = new_task(client, USER, title="original", description="text", priority="Low",
                    due_date="2026-12-01", tags=["work", "home"])
    _, before = fetch(client, task["id"])
    response = write(client, "PATCH", task["id"], change)
    assert response.get_json()["updated_at"] == task["updated_at"]  # the clock did not move
    assert assert_etag_of(response, client, task["id"]) != before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("same", [
    None,
    {},
    {"title": "original"},
    {"title": "  original  "},  # stored trimmed: the same title
    {"priority": "low"},  # the same priority in another case
    {"due_date": "2026-12-01", "description": "text", "completed": False},
    {"tags": ["home", "work"]},  # the same set in another order
    {"tags": ["HOME", "Work"]},  # ... and another case: the first spelling is kept
])
def test_etag_stays_when_nothing_changes(
    client: FlaskClient, task: Task, method: str, same: Any
) -> None:
    before_task, before = fetch(client, task["id"])
    response = write(client, method, task["id"], same)
    assert response.status_code == 200
    assert response.get_json() == before_task
    assert assert_etag_of(response, client, task["id"]) == before


def test_setting_completion_to_its_value_keeps_the_etag(client: FlaskClient, task: Task) -> None:
    before_task, before = fetch(client, task["id"])
    response = client.patch(task_url(task["id"]) + "/complete", json={"completed": False},
                            headers=bearer(USER))
    assert response.status_code == 200 and response.get_json() == before_task
    assert response.headers["ETag"] == before


# ---------------------------------------------------------------- If-Match


@pytest.mark.parametrize(("method", "body"), [
    ("PUT", {"title": "changed"}), ("PATCH", {"title": "changed"}), ("PATCH", None),
])
def test_if_match_with_the_current_etag_updates(
    client: FlaskClient, task: Task, method: str, body: Any
) -> None:
    _, etag = fetch(client, task["id"])
    response = write(client, method, task["id"], body, if_match=etag)
    assert response.status_code == 200
    new_etag = assert_etag_of(response, client, task["id"])
    if body:
        assert response.get_json()["title"] == "changed" and new_etag != etag
        # The new ETag is the current one: it works for the next conditional write.
        again = write(client, method, task["id"], {"title": "again"}, if_match=new_etag)
        assert again.status_code == 200 and again.get_json()["title"] == "again"


def test_the_etag_from_create_works_as_if_match(client: FlaskClient) -> None:
    response = client.post(f"/api/{USER}/tasks", json={"title": "x"}, headers=bearer(USER))
    created = response.get_json()
    updated = write(client, "PATCH", created["id"], {"title": "y"},
                    if_match=response.headers["ETag"])
    assert updated.status_code == 200 and updated.get_json()["title"] == "y"


def test_if_match_with_the_current_etag_deletes(client: FlaskClient, task: Task) -> None:
    _, etag = fetch(client, task["id"])
    response = write(client, "DELETE", task["id"], if_match=etag)
    assert response.status_code == 204 and response.get_data() == b""
    assert client.get(task_url(task["id"]), headers=bearer(USER)).status_code == 404
    assert write(client, "DELETE", task["id"], if_match=etag).status_code == 404


def stale_etag(client: FlaskClient, task: Task) -> str:
    """An ETag the task had before someone else's write."""
    _, etag = fetch(client, task["id"])
    assert write(client, "PATCH", task["id"], {"description": "someone else's edit"}).status_code == 200
    return etag


@pytest.mark.parametrize(("method", "body"), [
    ("PUT", {"title": "lost update", "tags": []}),
    ("PATCH", {"title": "lost update", "tags": []}),
    ("PATCH", {}),  # a no-op is still refused: the client's view is out of date
    ("DELETE", None),
])
def test_stale_if_match_is_412_and_changes_nothing(
    client: FlaskClient, task: Task, method: str, body: Any
) -> None:
    etag = stale_etag(client, task)
    current = fetch(client, task["id"])
    response = write(client, method, task["id"], body, if_match=etag)
    assert_precondition_failed(response)
    assert fetch(client, task["id"]) == current  # unchanged, and not deleted
    tags = client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json()
    assert {tag["name"] for tag in tags} == {"home", "work"}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", [
    "*",
    '"stale", {current}',
    '{current}, "stale"',
    '"a",{current} , "b"',
])
def test_if_match_star_and_lists_containing_the_current_etag_succeed(
    client: FlaskClient, task: Task, method: str, if_match: str
) -> None:
    _, current = fetch(client, task["id"])
    body = None if method == "DELETE" else {"title": "changed"}
    response = write(client, method, task["id"], body, if_match=if_match.format(current=current))
    assert response.status_code == (204 if method == "DELETE" else 200)
    if method == "DELETE":
        assert client.get(task_url(task["id"]), headers=bearer(USER)).status_code == 404
    else:
        assert fetch(client, task["id"])[0]["title"] == "changed"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", [
    "W/{current}",  # a weak tag never matches in the strong comparison If-Match uses
    'W/"stale", W/{current}',
    '"stale", "also-stale"',
    '"nonsense"',
    "{stale}",
])
def test_if_match_without_a_strong_match_is_412(
    client: FlaskClient, task: Task, method: str, if_match: str
) -> None:
    stale = stale_etag(client, task)
    current_task, current = fetch(client, task["id"])
    body = None if method == "DELETE" else {"title": "changed"}
    header = if_match.format(current=current, stale=stale)
    assert_precondition_failed(write(client, method, task["id"], body, if_match=header))
    assert fetch(client, task["id"]) == (current_task, current)


def test_without_if_match_the_last_write_wins(client: FlaskClient, task: Task) -> None:
    """Two clients read the same version; both write unconditionally; no 428."""
    _, etag = fetch(client, task["id"])
    first = write(client, "PUT", task["id"], {"title": "first", "priority": "High"})
    second = write(client, "PATCH", task["id"], {"title": "second"})
    assert first.status_code == second.status_code == 200
    final, final_etag = fetch(client, task["id"])
    assert (final["title"], final["priority"]) == ("second", "High")
    assert final_etag == second.headers["ETag"] != etag
    assert write(client, "DELETE", task["id"]).status_code == 204


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", ["*", "{etag}"])
def test_if_match_on_a_missing_or_foreign_task_is_404(
    client: FlaskClient, task: Task, method: str, if_match: str
) -> None:
    _, etag = fetch(client, task["id"])
    header = if_match.format(etag=etag)
    body = None if method == "DELETE" else {"title": "hijack"}
    missing = write(client, method, str(uuid.uuid4()), body, if_match=header)
    foreign = write(client, method, task["id"], body, if_match=header, user=OTHER)
    for response in (missing, foreign):
        assert response.status_code == 404
        assert response.mimetype == PROBLEM
    assert missing.get_json()["detail"] == foreign.get_json()["detail"]
    assert fetch(client, task["id"]) == (task, etag)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_an_if_match_of_weak_tags_only_says_so(
    client: FlaskClient, task: Task, method: str
) -> None:
    current_task, current = fetch(client, task["id"])
    body = None if method == "DELETE" else {"title": "changed"}
    response = write(client, method, task["id"], body, if_match=f"W/{current}")
    assert_precondition_failed(response)
    assert "weak" in response.get_json()["detail"]
    assert fetch(client, task["id"]) == (current_task, current)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", ["{bare}", "garbage", '"unterminated', '"a" "b"', ""])
def test_a_malformed_if_match_is_400_naming_it_and_changes_nothing(
    client: FlaskClient, task: Task, method: str, if_match: str
) -> None:
    current_task, current = fetch(client, task["id"])
    body = None if method == "DELETE" else {"title": "changed"}
    header = if_match.format(bare=current.strip('"'))
    response = write(client, method, task["id"], body, if_match=header)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert "If-Match" in problem["detail"] and "If-Match" in problem["errors"]["header"]
    assert fetch(client, task["id"]) == (current_task, current)
