"""GET /api/{user_id}/tags: usage counts through creates, updates and deletes, ordering,
the `q` prefix filter, `limit`, and isolation between users."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task

USER = "user-a"
OTHER = "user-b"
PROBLEM = "application/problem+json"
Usage = list[dict[str, Any]]


def tags_response(client: FlaskClient, params: Any = (), user: str = USER) -> Any:
    return client.get(f"/api/{user}/tags", query_string=params, headers=bearer(user))


def usage(client: FlaskClient, params: Any = (), user: str = USER) -> Usage:
    response = tags_response(client, params, user)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    body: Usage = response.get_json()
    return body


def counts(*pairs: tuple[str, int]) -> Usage:
    return [{"name": name, "usage_count": count} for name, count in pairs]


def change(client: FlaskClient, method: str, task: dict[str, Any], user: str = USER,
           **fields: Any) -> dict[str, Any]:
    response = client.open(
        f"/api/{user}/tasks/{task['id']}", method=method, json=fields, headers=bearer(user)
    )
    assert response.status_code == 200, response.get_json()
    changed: dict[str, Any] = response.get_json()
    return changed


def delete(client: FlaskClient, task: dict[str, Any], user: str = USER) -> None:
    response = client.delete(f"/api/{user}/tasks/{task['id']}", headers=bearer(user))
    assert response.status_code == 204


def assert_bad_query(response: Any, parameter: str) -> None:
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 400 and isinstance(body["detail"], str)
    assert list(body["errors"]["query"]) == [parameter], body


# ---------------------------------------------------------------- counts


def test_no_tags(client: FlaskClient) -> None:
    assert usage(client) == []
    new_task(client, USER, title="untagged")
    assert usage(client) == []


def test_counts_after_creates(client: FlaskClient) -> None:
    new_task(client, USER, tags=["work", "home"])
    new_task(client, USER, tags=["work"])
    new_task(client, USER, tags=["Work", "urgent", "WORK"])  # one tag, once, per task
    new_task(client, USER)
    assert usage(client) == counts(("work", 3), ("home", 1), ("urgent", 1))


def test_first_spelling_is_kept(client: FlaskClient) -> None:
    new_task(client, USER, tags=["Work"])
    new_task(client, USER, tags=["work"])
    new_task(client, USER, tags=["WORK"])
    assert usage(client) == counts(("Work", 3))


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_counts_follow_updates(client: FlaskClient, method: str) -> None:
    first = new_task(client, USER, tags=["work", "home"])
    second = new_task(client, USER, tags=["work"])
    assert usage(client) == counts(("work", 2), ("home", 1))

    change(client, method, first, tags=["home", "errands"])  # replaces, does not add
    assert usage(client) == counts(("errands", 1), ("home", 1), ("work", 1))

    change(client, method, second, title="no tag change")
    assert usage(client) == counts(("errands", 1), ("home", 1), ("work", 1))

    change(client, method, second, tags=["home"])  # "work" is now unused: it disappears
    assert usage(client) == counts(("home", 2), ("errands", 1))

    change(client, method, first, tags=[])
    assert usage(client) == counts(("home", 1))

    change(client, method, second, tags=[])
    assert usage(client) == []


def test_completion_does_not_touch_tags(client: FlaskClient) -> None:
    task = new_task(client, USER, tags=["work"])
    response = client.patch(f"/api/{USER}/tasks/{task['id']}/complete", headers=bearer(USER))
    assert response.status_code == 200 and response.get_json()["completed"] is True
    assert usage(client) == counts(("work", 1))


def test_counts_follow_deletes(client: FlaskClient) -> None:
    first = new_task(client, USER, tags=["work", "home"])
    second = new_task(client, USER, tags=["work"])
    delete(client, first)
    assert usage(client) == counts(("work", 1))
    delete(client, second)
    assert usage(client) == []


def test_a_tag_that_disappeared_comes_back_with_the_new_spelling(client: FlaskClient) -> None:
    task = new_task(client, USER, tags=["Work"])
    delete(client, task)
    new_task(client, USER, tags=["work"])
    assert usage(client) == counts(("work", 1))


def test_a_renamed_spelling_is_not_a_change(client: FlaskClient) -> None:
    task = new_task(client, USER, tags=["Work"])
    changed = change(client, "PATCH", task, tags=["WORK"])
    assert changed["tags"] == ["Work"]
    assert usage(client) == counts(("Work", 1))


# ---------------------------------------------------------------- order


def test_order_is_usage_descending_then_name_ignoring_case(client: FlaskClient) -> None:
    new_task(client, USER, tags=["zulu", "Gamma", "alpha", "Beta", "delta"])
    new_task(client, USER, tags=["zulu", "Gamma", "alpha", "Beta"])
    new_task(client, USER, tags=["zulu"])
    # Case-sensitively "Beta" < "Gamma" < "alpha"; the contract compares names ignoring case.
    assert usage(client) == counts(
        ("zulu", 3), ("alpha", 2), ("Beta", 2), ("Gamma", 2), ("delta", 1)
    )


# ---------------------------------------------------------------- q


PREFIX_TAGS = ["work", "Workshop", "homework", "50%off", "500", "a_b", "axb",
               "back\\slash", "backXslash", "Ärger"]


@pytest.mark.parametrize(("q", "expected"), [
    ("wo", ["Workshop", "work"]),
    ("WORK", ["Workshop", "work"]),
    ("works", ["Workshop"]),
    ("home", ["homework"]),
    ("ork", []),  # a prefix, not a substring
    ("5", ["50%off", "500"]),
    ("50%", ["50%off"]),
    ("%", []),
    ("a_", ["a_b"]),
    ("_", []),
    ("back\\", ["back\\slash"]),
    ("\\", []),
    ("nothing", []),
])
def test_q_is_a_literal_case_insensitive_prefix(
    client: FlaskClient, q: str, expected: list[str]
) -> None:
    new_task(client, USER, tags=PREFIX_TAGS)
    new_task(client, USER, tags=["Workshop", "50%off"])
    twice = {"Workshop", "50%off"}
    assert usage(client, {"q": q}) == [
        {"name": name, "usage_count": 2 if name in twice else 1} for name in expected
    ]


def test_q_orders_like_the_full_list(client: FlaskClient) -> None:
    new_task(client, USER, tags=["WorkB", "worka", "workc", "home"])
    new_task(client, USER, tags=["workc"])
    assert usage(client, {"q": "work"}) == counts(("workc", 2), ("worka", 1), ("WorkB", 1))


def test_empty_q_filters_nothing(client: FlaskClient) -> None:
    new_task(client, USER, tags=["b", "a"])
    assert usage(client, {"q": ""}) == usage(client) == counts(("a", 1), ("b", 1))


def test_q_folds_non_ascii_case(client: FlaskClient) -> None:
    """Tag keys are case-folded in Python on write, so this holds on SQLite too."""
    new_task(client, USER, tags=PREFIX_TAGS)
    assert usage(client, {"q": "äR"}) == counts(("Ärger", 1))


# ---------------------------------------------------------------- limit


def test_limit_defaults_to_50_and_keeps_the_top(client: FlaskClient) -> None:
    names = [f"tag{number:02d}" for number in range(60)]
    for start in range(0, 60, 20):
        new_task(client, USER, tags=names[start:start + 20])
    new_task(client, USER, tags=["tag59", "tag58"])  # the most used, though last by name
    expected = counts(("tag58", 2), ("tag59", 2), *[(name, 1) for name in names[:58]])
    assert usage(client) == expected[:50]
    assert usage(client, {"limit": 100}) == expected
    assert usage(client, {"limit": 1}) == expected[:1]
    assert usage(client, {"limit": 3, "q": "tag0"}) == counts(("tag00", 1), ("tag01", 1),
                                                               ("tag02", 1))


@pytest.mark.parametrize(("query", "parameter"), [
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=-1", "limit"),
    ("limit=abc", "limit"),
    ("limit=", "limit"),
    ("limit=5_0", "limit"),
    ("limit=%2B5", "limit"),
    ("limit=%205", "limit"),
    ("limit=%D9%A5", "limit"),
    ("page=2", "page"),
    ("prefix=wo", "prefix"),
    ("limit=5&limit=500", "limit"),
    ("q=wo&q=ho", "q"),
])
def test_bad_arguments_are_400(client: FlaskClient, query: str, parameter: str) -> None:
    new_task(client, USER, tags=["work"])
    assert_bad_query(tags_response(client, query), parameter)


# ---------------------------------------------------------------- users


def test_users_count_their_tags_separately(client: FlaskClient) -> None:
    new_task(client, USER, tags=["work", "secret-plan"])
    new_task(client, USER, tags=["Work"])
    new_task(client, OTHER, tags=["WORK", "hobby"])
    assert usage(client) == counts(("work", 2), ("secret-plan", 1))
    assert usage(client, user=OTHER) == counts(("hobby", 1), ("WORK", 1))
    assert usage(client, {"q": "sec"}, user=OTHER) == []


def test_one_users_changes_do_not_touch_the_others_tags(client: FlaskClient) -> None:
    mine = new_task(client, USER, tags=["work"])
    new_task(client, OTHER, tags=["work"])
    change(client, "PATCH", mine, tags=[])
    assert usage(client) == []
    assert usage(client, user=OTHER) == counts(("work", 1))
    delete(client, new_task(client, USER, tags=["work"]))
    assert usage(client, user=OTHER) == counts(("work", 1))


def test_another_users_tags_are_forbidden(client: FlaskClient) -> None:
    new_task(client, USER, tags=["work"])
    response = client.get(f"/api/{USER}/tags", headers=bearer(OTHER))
    assert response.status_code == 403
    assert response.mimetype == PROBLEM
    assert "work" not in response.get_data(as_text=True)
