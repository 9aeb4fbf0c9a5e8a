"""One user can never see or touch another user's tasks or tags.

The attacker uses a valid token of their own, on their own path (`/api/{attacker}/...`), with
the id of the owner's task: the answer must be the 404 a nonexistent id gets, identical in
every respect, and the owner's task must be left byte-for-byte as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import bearer, new_task

OWNER = "owner-user"
ATTACKER = "attacker-user"
# A second header value the attacker may send; none of them may turn a 404 into anything else.
IF_MATCH_VARIANTS = {
    "no-if-match": None,
    "if-match-star": "*",
    "if-match-stale": '"0123456789abcdef0123456789abcdef"',
    "if-match-owners-etag": "OWNER_ETAG",
}
ENDPOINTS = [
    pytest.param("GET", "", None, id="GET"),
    pytest.param("PUT", "", {"title": "hijacked", "tags": ["pwned"]}, id="PUT"),
    pytest.param("PATCH", "", {"title": "hijacked", "completed": True}, id="PATCH"),
    pytest.param("PUT", "", {}, id="PUT-empty"),
    pytest.param("PATCH", "", {}, id="PATCH-empty"),
    pytest.param("DELETE", "", None, id="DELETE"),
    pytest.param("PATCH", "/complete", None, id="complete-toggle"),
    pytest.param("PATCH", "/complete", {"completed": True}, id="complete-set"),
]


def task_url(user_id: str, task_id: str) -> str:
    return f"/api/{user_id}/tasks/{task_id}"


def request_as(client: FlaskClient, user_id: str, method: str, url: str, body: Any = None,
               if_match: str | None = None) -> TestResponse:
    headers = bearer(user_id)
    if if_match is not None:
        headers["If-Match"] = if_match
    if body is None:
        return client.open(url, method=method, headers=headers)
    return client.open(url, method=method, json=body, headers=headers)


def owner_view(client: FlaskClient, task_id: str) -> tuple[int, bytes, str | None]:
    response = client.get(task_url(OWNER, task_id), headers=bearer(OWNER))
    return response.status_code, response.get_data(), response.headers.get("ETag")


def comparable(response: TestResponse, url: str) -> tuple[Any, ...]:
    """Everything a client can observe, except what differs by construction (the request id
    and the `instance`, which is the requested path)."""
    body: dict[str, Any] = response.get_json()
    assert body.pop("instance") == url
    headers = sorted(
        (name, value) for name, value in response.headers.items()
        if name not in {"X-Request-ID", "Content-Length"}
    )
    return response.status_code, response.mimetype, body, headers


def listing(client: FlaskClient, user_id: str, query: str = "") -> dict[str, Any]:
    if "limit=" not in query:
        query += "&limit=100"
    response = client.get(f"/api/{user_id}/tasks?{query.lstrip('&')}", headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    page: dict[str, Any] = response.get_json()
    return page


def tags_of(client: FlaskClient, user_id: str, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/{user_id}/tags?limit=100{query}", headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    tags: list[dict[str, Any]] = response.get_json()
    return tags


# ---------------------------------------------------------------- endpoints taking a task id


@pytest.mark.parametrize("attacker_has_tasks", [False, True], ids=["new-attacker", "attacker"])
@pytest.mark.parametrize("if_match", list(IF_MATCH_VARIANTS.values()),
                         ids=list(IF_MATCH_VARIANTS))
@pytest.mark.parametrize(("method", "suffix", "body"), ENDPOINTS)
def test_another_users_task_is_404_like_a_nonexistent_one(
    client: FlaskClient,
    method: str,
    suffix: str,
    body: Any,
    if_match: str | None,
    attacker_has_tasks: bool,
) -> None:
    victim = new_task(client, OWNER, title="Secret plan", description="do not read",
                      priority="High", due_date="2026-12-01", tags=["private", "Work"])
    if attacker_has_tasks:
        new_task(client, ATTACKER, title="Mine", tags=["work"])
    before = owner_view(client, victim["id"])
    owner_listing = listing(client, OWNER)
    owner_tags = tags_of(client, OWNER)
    attacker_listing = listing(client, ATTACKER)
    if if_match == "OWNER_ETAG":
        if_match = before[2]

    victim_url = task_url(ATTACKER, victim["id"]) + suffix
    missing_url = task_url(ATTACKER, str(uuid.uuid4())) + suffix
    against_victim = request_as(client, ATTACKER, method, victim_url, body, if_match)
    against_missing = request_as(client, ATTACKER, method, missing_url, body, if_match)

    assert against_victim.status_code == 404
    assert against_victim.mimetype == "application/problem+json"
    problem = against_victim.get_json()
    assert problem["status"] == 404
    assert problem["detail"] == "Task not found."
    assert "ETag" not in against_victim.headers
    assert "Secret" not in against_victim.get_data(as_text=True)
    assert comparable(against_victim, victim_url) == comparable(against_missing, missing_url)

    assert owner_view(client, victim["id"]) == before
    assert listing(client, OWNER) == owner_listing
    assert tags_of(client, OWNER) == owner_tags
    assert listing(client, ATTACKER) == attacker_listing


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("PUT", "", {"title": ""}, id="PUT"),
        pytest.param("PATCH", "", {"priority": "urgent"}, id="PATCH"),
        pytest.param("PATCH", "/complete", {"completed": "yes"}, id="complete"),
    ],
)
def test_an_invalid_body_gets_the_same_answer_for_another_users_task(
    client: FlaskClient, method: str, suffix: str, body: dict[str, Any]
) -> None:
    # Validation runs before the lookup, so a 400 cannot tell whether the id exists either.
    victim = new_task(client, OWNER)
    before = owner_view(client, victim["id"])
    victim_url = task_url(ATTACKER, victim["id"]) + suffix
    missing_url = task_url(ATTACKER, str(uuid.uuid4())) + suffix

    against_victim = request_as(client, ATTACKER, method, victim_url, body)
    against_missing = request_as(client, ATTACKER, method, missing_url, body)

    assert against_victim.status_code == 400
    assert comparable(against_victim, victim_url) == comparable(against_missing, missing_url)
    assert owner_view(client, victim["id"]) == before


def test_the_owner_still_has_full_access_afterwards(client: FlaskClient) -> None:
    victim = new_task(client, OWNER, title="Mine")
    for method, suffix, body in (("PATCH", "", {"title": "x"}), ("DELETE", "", None),
                                 ("PATCH", "/complete", None)):
        request_as(client, ATTACKER, method, task_url(ATTACKER, victim["id"]) + suffix, body)

    renamed = request_as(client, OWNER, "PATCH", task_url(OWNER, victim["id"]), {"title": "Still"})
    deleted = request_as(client, OWNER, "DELETE", task_url(OWNER, victim["id"]))

    assert renamed.status_code == 200
    assert renamed.get_json()["title"] == "Still"
    assert deleted.status_code == 204


# ---------------------------------------------------------------- listing and tags


def test_listings_only_ever_show_the_users_own_tasks(client: FlaskClient) -> None:
    owner_tasks = [new_task(client, OWNER, title=f"Owner {i}", tags=["shared"]) for i in range(3)]
    attacker_task = new_task(client, ATTACKER, title="Attacker", tags=["shared"])

    owner_page = listing(client, OWNER)
    attacker_page = listing(client, ATTACKER)

    assert {task["id"] for task in owner_page["data"]} == {task["id"] for task in owner_tasks}
    assert owner_page["total"] == 3
    assert attacker_page["data"] == [attacker_task]
    assert attacker_page["total"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "", "&search=Secret", "&search=plan", "&tags=private", "&tags=Work",
        "&tags=private&tags=work&tag_mode=all", "&status=completed", "&priority=High",
        "&due_from=2026-01-01&due_to=2026-12-31", "&sort_by=title&sort_direction=asc",
        "&offset=0&limit=1",
    ],
)
def test_filters_never_reach_another_users_tasks(client: FlaskClient, query: str) -> None:
    victim = new_task(client, OWNER, title="Secret plan", description="hidden", priority="High",
                      due_date="2026-12-01", tags=["private", "work"])
    request_as(client, OWNER, "PATCH", task_url(OWNER, victim["id"]) + "/complete")

    page = listing(client, ATTACKER, query)

    assert page["data"] == []
    assert page["total"] == 0
    assert len(listing(client, OWNER, query)["data"]) == 1


def test_tags_only_ever_show_the_users_own_tags(client: FlaskClient) -> None:
    new_task(client, OWNER, tags=["private", "errands"])
    new_task(client, OWNER, tags=["private"])
    new_task(client, ATTACKER, tags=["mine"])

    assert tags_of(client, ATTACKER) == [{"name": "mine", "usage_count": 1}]
    assert tags_of(client, ATTACKER, "&q=pri") == []
    assert tags_of(client, OWNER) == [
        {"name": "private", "usage_count": 2},
        {"name": "errands", "usage_count": 1},
    ]


def test_a_new_user_sees_nothing_of_other_users(client: FlaskClient) -> None:
    new_task(client, OWNER, tags=["private"])

    assert listing(client, ATTACKER) == {"data": [], "total": 0, "limit": 100, "offset": 0}
    assert tags_of(client, ATTACKER) == []


def test_the_same_tag_name_for_two_users_is_two_independent_tags(client: FlaskClient) -> None:
    owner_first = new_task(client, OWNER, tags=["Work"])
    owner_second = new_task(client, OWNER, tags=["work"])
    attacker_task = new_task(client, ATTACKER, tags=["WORK"])

    # Each user keeps their own first spelling and their own count.
    assert owner_second["tags"] == ["Work"]
    assert attacker_task["tags"] == ["WORK"]
    assert tags_of(client, OWNER) == [{"name": "Work", "usage_count": 2}]
    assert tags_of(client, ATTACKER) == [{"name": "WORK", "usage_count": 1}]

    # The owner dropping the tag everywhere leaves the attacker's untouched...
    request_as(client, OWNER, "PATCH", task_url(OWNER, owner_first["id"]), {"tags": []})
    request_as(client, OWNER, "DELETE", task_url(OWNER, owner_second["id"]))
    assert tags_of(client, OWNER) == []
    assert tags_of(client, ATTACKER) == [{"name": "WORK", "usage_count": 1}]

    # ...and the owner's next use of the name is a fresh tag with the owner's new spelling.
    again = new_task(client, OWNER, tags=["wORK"])
    assert again["tags"] == ["wORK"]
    assert tags_of(client, ATTACKER) == [{"name": "WORK", "usage_count": 1}]
    assert listing(client, ATTACKER, "&tags=work")["data"] == [attacker_task]


def test_renaming_tags_on_one_users_task_does_not_touch_the_other_user(
    client: FlaskClient,
) -> None:
    owner_task = new_task(client, OWNER, tags=["home", "garden"])
    attacker_task = new_task(client, ATTACKER, tags=["home", "garden"])

    request_as(client, ATTACKER, "PUT", task_url(ATTACKER, attacker_task["id"]), {"tags": ["x"]})

    got = client.get(task_url(OWNER, owner_task["id"]), headers=bearer(OWNER))
    assert got.get_json() == owner_task
    assert sorted(tag["name"] for tag in tags_of(client, OWNER)) == ["garden", "home"]
    assert tags_of(client, ATTACKER) == [{"name": "x", "usage_count": 1}]
