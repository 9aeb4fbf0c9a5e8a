"""`POST /api/{user_id}/tasks/batch` through HTTP: every operation, refs, atomicity, caps
counted one by one, and bad input, on every backend (the fixtures parametrize).

What a batch did is always checked through the other endpoints afterwards (GET of each task,
the listing, `/tags`), never through the batch's own answer alone.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import assert_problem, bearer, make_config, new_task
from todo import create_app

USER = "batch-user"
URL = f"/api/{USER}/tasks/batch"
UNKNOWN_ID = "5b9a4a8e-3f0c-4d7e-9a57-2f1c6e0b8d41"


# ---------------------------------------------------------------- helpers


def batch(client: FlaskClient, *operations: Any, user_id: str = USER) -> TestResponse:
    return client.post(f"/api/{user_id}/tasks/batch", json={"operations": list(operations)},
                       headers=bearer(user_id))


def results(response: TestResponse) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["results"]
    found: list[dict[str, Any]] = body["results"]
    return found


def get(client: FlaskClient, task_id: str) -> TestResponse:
    return client.get(f"/api/{USER}/tasks/{task_id}", headers=bearer(USER))


def assert_result_is_current(client: FlaskClient, result: dict[str, Any]) -> None:
    """The result's task and ETag are what a GET of the task gives now."""
    got = get(client, result["id"])
    assert got.status_code == 200, got.get_json()
    assert got.get_json() == result["task"]
    assert got.headers["ETag"] == result["etag"]


def snapshot(client: FlaskClient) -> dict[str, Any]:
    """Everything the user can read: each task with its ETag, and the tags."""
    listing = client.get(f"/api/{USER}/tasks?limit=100", headers=bearer(USER)).get_json()
    tasks = {}
    for task in listing["data"]:
        got = get(client, task["id"])
        tasks[task["id"]] = (got.get_json(), got.headers["ETag"])
    tags = client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json()
    return {"total": listing["total"], "tasks": tasks, "tags": tags}


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    return new_task(client, USER, **fields)


# ---------------------------------------------------------------- each operation


def test_create_is_201_with_the_task_and_its_etag(client: FlaskClient) -> None:
    body = {"title": "  Buy milk ", "description": "2 litres", "priority": "high",
            "due_date": "2026-12-01", "tags": ["home", "Errands", "HOME"]}

    [result] = results(batch(client, {"op": "create", "task": body}))

    assert set(result) == {"op", "id", "status", "task", "etag"}
    assert (result["op"], result["status"]) == ("create", 201)
    task = result["task"]
    assert task["id"] == result["id"] and uuid.UUID(result["id"]).version == 4
    assert (task["user_id"], task["title"], task["priority"], task["tags"]) == (
        USER, "Buy milk", "High", ["Errands", "home"])
    assert task["completed"] is False and task["created_at"] == task["updated_at"]
    assert_result_is_current(client, result)
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == [
        {"name": "Errands", "usage_count": 1}, {"name": "home", "usage_count": 1}]


def test_update_is_200_and_takes_a_patch_body(client: FlaskClient) -> None:
    task = create(client, title="Original", tags=["a", "b"], due_date="2026-01-01")

    [result] = results(batch(client, {"op": "update", "id": task["id"], "task": {
        "title": "Renamed", "tags": ["b", "c"], "due_date": None, "completed": True}}))

    assert (result["op"], result["status"], result["id"]) == ("update", 200, task["id"])
    assert result["task"] == {**task, "title": "Renamed", "tags": ["b", "c"], "due_date": None,
                              "completed": True, "updated_at": result["task"]["updated_at"]}
    assert result["task"]["updated_at"] > task["updated_at"]
    assert_result_is_current(client, result)
    tags = client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json()
    assert sorted(tag["name"] for tag in tags) == ["b", "c"]


def test_an_empty_update_changes_nothing(client: FlaskClient) -> None:
    task = create(client, tags=["a"])
    before = get(client, task["id"])

    [result] = results(batch(client, {"op": "update", "id": task["id"], "task": {}}))

    assert result["task"] == task and result["etag"] == before.headers["ETag"]
    assert get(client, task["id"]).get_data() == before.get_data()


def test_complete_without_a_value_toggles_and_with_one_sets(client: FlaskClient) -> None:
    task = create(client)

    toggled = results(batch(
        client,
        {"op": "complete", "id": task["id"]},
        {"op": "complete", "id": task["id"]},
        {"op": "complete", "id": task["id"]},
        {"op": "complete", "id": task["id"], "completed": True},
        {"op": "complete", "id": task["id"], "completed": False},
    ))

    assert [r["task"]["completed"] for r in toggled] == [True, False, True, True, False]
    assert all((r["op"], r["status"], r["id"]) == ("complete", 200, task["id"]) for r in toggled)
    # `completed` set to the value it has is no change.
    assert toggled[3]["task"]["updated_at"] == toggled[2]["task"]["updated_at"]
    assert_result_is_current(client, toggled[-1])


def test_delete_is_204_without_a_task(client: FlaskClient) -> None:
    task = create(client, tags=["gone"])
    kept = create(client, tags=["kept"])

    [result] = results(batch(client, {"op": "delete", "id": task["id"].upper()}))

    assert result == {"op": "delete", "id": task["id"], "status": 204}
    assert_problem(get(client, task["id"]), 404)
    assert get(client, kept["id"]).status_code == 200
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == [
        {"name": "kept", "usage_count": 1}]


def test_every_kind_in_one_batch_in_request_order(client: FlaskClient) -> None:
    edited, toggled, deleted = create(client), create(client), create(client, tags=["x"])

    answer = results(batch(
        client,
        {"op": "delete", "id": deleted["id"]},
        {"op": "create", "task": {"title": "new", "tags": ["x"]}},
        {"op": "complete", "id": toggled["id"]},
        {"op": "update", "id": edited["id"], "task": {"priority": "Low"}},
    ))

    assert [(r["op"], r["status"]) for r in answer] == [
        ("delete", 204), ("create", 201), ("complete", 200), ("update", 200)]
    assert [answer[0]["id"], answer[2]["id"], answer[3]["id"]] == [
        deleted["id"], toggled["id"], edited["id"]]
    for result in answer[1:]:
        assert_result_is_current(client, result)
    assert_problem(get(client, deleted["id"]), 404)
    # The tag `x` went with the deleted task and came back with the new one: a new tag.
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == [
        {"name": "x", "usage_count": 1}]
    listing = client.get(f"/api/{USER}/tasks", headers=bearer(USER)).get_json()
    assert {task["id"] for task in listing["data"]} == {
        edited["id"], toggled["id"], answer[1]["id"]}


def test_results_and_etags_equal_what_get_returns_afterwards(client: FlaskClient) -> None:
    tasks = [create(client, title=f"t{i}", tags=["shared", f"own{i}"]) for i in range(4)]

    answer = results(batch(
        client,
        *({"op": "update", "id": task["id"], "task": {"tags": ["shared", "Other"]}}
          for task in tasks[:2]),
        {"op": "complete", "id": tasks[2]["id"]},
        *({"op": "create", "task": {"title": f"n{i}", "tags": ["OTHER", "shared", f"n{i}"]}}
          for i in range(3)),
    ))

    for result in answer:
        assert_result_is_current(client, result)
    # The first spelling of a tag is kept for the later operations of the batch too.
    assert [r["task"]["tags"] for r in answer[3:]] == [
        ["n0", "Other", "shared"], ["n1", "Other", "shared"], ["n2", "Other", "shared"]]
    tags = client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json()
    assert tags[:2] == [{"name": "shared", "usage_count": 7}, {"name": "Other", "usage_count": 5}]


def test_a_tag_that_an_earlier_operation_removed_is_created_anew(client: FlaskClient) -> None:
    """Later creates reuse the tags earlier operations of the batch looked up or made, until
    an operation unlinks tags: the last unlink deletes a tag."""
    answer = results(batch(
        client,
        {"op": "create", "ref": "a", "task": {"title": "a", "tags": ["solo"]}},
        {"op": "update", "id": "$a", "task": {"tags": []}},  # `solo` is gone
        {"op": "create", "ref": "b", "task": {"title": "b", "tags": ["SOLO"]}},
        {"op": "create", "task": {"title": "c", "tags": ["solo", "pair"]}},
        {"op": "delete", "id": "$b"},
        {"op": "create", "task": {"title": "d", "tags": ["Pair"]}},
    ))

    assert [r.get("task", {}).get("tags") for r in answer] == [
        ["solo"], [], ["SOLO"], ["pair", "SOLO"], None, ["pair"]]
    for result in (answer[1], answer[3], answer[5]):
        assert_result_is_current(client, result)
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == [
        {"name": "pair", "usage_count": 2}, {"name": "SOLO", "usage_count": 1}]


# ---------------------------------------------------------------- refs


def test_a_ref_chain_creates_updates_completes_and_deletes_one_task(client: FlaskClient) -> None:
    answer = results(batch(
        client,
        {"op": "create", "ref": "tmp-1", "task": {"title": "draft", "tags": ["a"]}},
        {"op": "update", "id": "$tmp-1", "task": {"title": "final", "tags": ["b"]}},
        {"op": "complete", "id": "$tmp-1"},
        {"op": "create", "ref": "tmp-2", "task": {"title": "kept"}},
        {"op": "complete", "id": "$tmp-2", "completed": True},
        {"op": "delete", "id": "$tmp-1"},
    ))

    first, second = answer[0]["id"], answer[3]["id"]
    assert [r["id"] for r in answer] == [first, first, first, second, second, first]
    assert answer[1]["task"]["title"] == "final" and answer[2]["task"]["completed"] is True
    assert answer[1]["task"]["updated_at"] > answer[0]["task"]["updated_at"]
    assert answer[5] == {"op": "delete", "id": first, "status": 204}
    assert_problem(get(client, first), 404)
    assert_result_is_current(client, answer[4])
    assert client.get(f"/api/{USER}/tags", headers=bearer(USER)).get_json() == []


def test_refs_are_per_batch_and_ids_work_alongside(client: FlaskClient) -> None:
    existing = create(client)
    answer = results(batch(
        client,
        {"op": "create", "ref": "x", "task": {"title": "one"}},
        {"op": "update", "id": existing["id"], "task": {"title": "renamed"}},
        {"op": "update", "id": "$x", "task": {"description": "by ref"}},
    ))
    assert answer[2]["id"] == answer[0]["id"]

    # The same ref in the next batch is a new name: nothing carries over.
    again = results(batch(client, {"op": "create", "ref": "x", "task": {"title": "two"}},
                          {"op": "complete", "id": "$x"}))
    assert again[1]["id"] == again[0]["id"] != answer[0]["id"]
    assert get(client, answer[0]["id"]).get_json()["completed"] is False


def test_a_ref_created_then_deleted_is_404_for_a_later_operation(client: FlaskClient) -> None:
    before = snapshot(client)

    response = batch(
        client,
        {"op": "create", "ref": "t", "task": {"title": "short-lived"}},
        {"op": "delete", "id": "$t"},
        {"op": "complete", "id": "$t"},
    )

    problem = assert_problem(response, 404)
    assert problem["errors"] == {"operations": {"2": ["Task not found."]}}
    assert snapshot(client) == before


# ---------------------------------------------------------------- atomicity

# Six operations that each change something, then a 7th that fails.
FAILURES = ["404", "412", "409-tasks", "409-tags", "400"]


@pytest.fixture
def seeded(client: FlaskClient) -> dict[str, dict[str, Any]]:
    return {
        "one": create(client, title="one", tags=["a", "b"]),
        "two": create(client, title="two", tags=["b"]),
        "three": create(client, title="three", tags=["c"]),
    }


def six_operations(seeded: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"op": "create", "ref": "n1", "task": {"title": "new 1", "tags": ["b", "new"]}},
        {"op": "update", "id": seeded["one"]["id"], "task": {"title": "changed",
                                                             "tags": ["a", "z"]}},
        {"op": "complete", "id": seeded["two"]["id"]},
        {"op": "delete", "id": seeded["three"]["id"]},  # tag c goes with it
        {"op": "update", "id": "$n1", "task": {"completed": True}},
        {"op": "create", "task": {"title": "new 2"}},
    ]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_seventh_operation_leaves_the_first_six_unapplied(
    app: Flask, client: FlaskClient, seeded: dict[str, dict[str, Any]], failure: str
) -> None:
    """Tasks: 3, then +1 (op 0), -1 (op 3), +1 (op 5) = 4. Tags in use: a b c, then + new
    (op 0), + z (op 1), - c (op 3) = a b new z."""
    one = seeded["one"]
    seventh, status, message = {
        "404": ({"op": "complete", "id": UNKNOWN_ID}, 404, "Task not found."),
        # `one`'s ETag from before op 1 changed it: stale within the batch.
        "412": ({"op": "update", "id": one["id"], "task": {"title": "late"},
                 "if_match": get(client, one["id"]).headers["ETag"]}, 412, "ETag"),
        "409-tasks": ({"op": "create", "task": {"title": "fifth"}}, 409, "at most 4 tasks"),
        "409-tags": ({"op": "update", "id": seeded["two"]["id"], "task": {"tags": ["q", "r"]}},
                     409, "at most 5 distinct tags"),
        "400": ({"op": "update", "id": one["id"], "task": {"title": " "}}, 400,
                "task.title: Must be 1-200 characters after trimming."),
    }[failure]
    app.config["MAX_TASKS_PER_USER"] = 4
    app.config["MAX_TAGS_PER_USER"] = 5
    before = snapshot(client)

    problem = assert_problem(batch(client, *six_operations(seeded), seventh), status)

    assert list(problem["errors"]["operations"]) == ["6"]
    [text] = problem["errors"]["operations"]["6"]
    assert message in text
    assert "no operation was applied" in problem["detail"] or (
        problem["detail"].startswith("Operation 6 (") and "none was applied" in problem["detail"])
    assert snapshot(client) == before
    assert before["total"] == 3 and [tag["name"] for tag in before["tags"]] == ["b", "a", "c"]

    # The same six alone apply, within both caps.
    answer = results(batch(client, *six_operations(seeded)))
    after = snapshot(client)
    assert after["total"] == 4
    assert sorted(tag["name"] for tag in after["tags"]) == ["a", "b", "new", "z"]
    latest = {result["id"]: result for result in answer}  # each task's last result
    assert {task_id: (result["task"], result["etag"]) for task_id, result in latest.items()
            if result["status"] != 204} == after["tasks"]


def test_a_failed_batch_leaves_no_transaction_open_and_the_next_works(
    client: FlaskClient, seeded: dict[str, dict[str, Any]]
) -> None:
    for _ in range(3):
        assert_problem(batch(client, *six_operations(seeded),
                             {"op": "delete", "id": UNKNOWN_ID}), 404)
    assert results(batch(client, *six_operations(seeded)))
    assert snapshot(client)["total"] == 4


# ---------------------------------------------------------------- caps, one by one


def test_creates_past_the_task_cap_count_one_by_one(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_TASKS_PER_USER"] = 10
    for i in range(8):  # the limit (10) minus 2
        create(client, title=f"t{i}")
    before = snapshot(client)

    problem = assert_problem(batch(client, *({"op": "create", "task": {"title": f"n{i}"}}
                                             for i in range(3))), 409)

    assert problem["errors"] == {"operations": {"2": [
        "Task limit reached: a user can have at most 10 tasks."]}}
    assert snapshot(client) == before
    # Two fit; and a delete earlier in a batch makes room for a later create.
    assert len(results(batch(client, *({"op": "create", "task": {"title": f"n{i}"}}
                                       for i in range(2))))) == 2
    some = next(iter(before["tasks"]))
    assert_problem(batch(client, {"op": "create", "task": {"title": "x"}},
                         {"op": "delete", "id": some}), 409)
    answer = results(batch(client, {"op": "delete", "id": some},
                           {"op": "create", "task": {"title": "x", "tags": ["t"]}}))
    assert answer[1]["status"] == 201
    assert snapshot(client)["total"] == 10


def test_tags_past_the_tag_cap_count_one_by_one(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_TAGS_PER_USER"] = 6
    task = create(client, tags=["a", "b", "c", "d"])
    before = snapshot(client)

    # e, f fit (6); g is the 7th tag in use.
    problem = assert_problem(batch(
        client,
        {"op": "create", "task": {"title": "x", "tags": ["e", "a"]}},
        {"op": "create", "task": {"title": "y", "tags": ["F"]}},
        {"op": "create", "task": {"title": "z", "tags": ["f", "g"]}},
    ), 409)

    assert problem["errors"] == {"operations": {"2": [
        "Tag limit reached: a user can have at most 6 distinct tags."]}}
    assert snapshot(client) == before
    # Dropping tags earlier in the batch makes room for new ones later in it.
    answer = results(batch(
        client,
        {"op": "update", "id": task["id"], "task": {"tags": ["a"]}},
        {"op": "create", "task": {"title": "x", "tags": ["e", "f", "g", "h", "i"]}},
    ))
    assert answer[1]["task"]["tags"] == ["e", "f", "g", "h", "i"]
    assert len(snapshot(client)["tags"]) == 6


def test_tags_per_task_are_checked_per_operation(client: FlaskClient) -> None:
    problem = assert_problem(batch(
        client,
        {"op": "create", "task": {"title": "ok", "tags": [f"t{i}" for i in range(20)]}},
        {"op": "create", "task": {"title": "too many", "tags": [f"t{i}" for i in range(21)]}},
    ), 400)

    assert problem["errors"]["operations"] == {"1": [
        "task.tags: At most 20 distinct tags per task."]}
    assert snapshot(client)["total"] == 0


# ---------------------------------------------------------------- If-Match


def test_if_match_on_update_and_delete(client: FlaskClient) -> None:
    task, other = create(client), create(client)
    etag = get(client, task["id"]).headers["ETag"]

    answer = results(batch(
        client,
        {"op": "update", "id": task["id"], "task": {"title": "a"}, "if_match": etag},
        {"op": "update", "id": task["id"], "task": {"title": "b"}, "if_match": "*"},
        {"op": "delete", "id": other["id"],
         "if_match": f'"x", {get(client, other["id"]).headers["ETag"]}'},
    ))
    assert answer[1]["task"]["title"] == "b"

    # An ETag from this batch's own answer is current for the next operation.
    stale = answer[0]["etag"]
    for if_match in (stale, f"W/{answer[1]['etag']}"):
        problem = assert_problem(batch(client, {"op": "delete", "id": task["id"],
                                                "if_match": if_match}), 412)
        assert list(problem["errors"]["operations"]) == ["0"]
    assert get(client, task["id"]).headers["ETag"] == answer[1]["etag"]


# ---------------------------------------------------------------- bad input

OPERATION_ERRORS = [
    pytest.param({"op": "archive", "id": UNKNOWN_ID}, "op: Must be one of: create, update, "
                 "complete, delete.", id="unknown-op"),
    pytest.param({"id": UNKNOWN_ID}, "op: Missing data for required field.", id="no-op"),
    pytest.param(["op", "create"], "Must be a JSON object", id="operation-not-an-object"),
    pytest.param({"op": "update", "id": "not-a-uuid", "task": {}}, "id: Must be a task's UUID",
                 id="id-not-a-uuid"),
    pytest.param({"op": "delete", "id": f"{UNKNOWN_ID}\n"}, "id: Must be a task's UUID",
                 id="id-with-newline"),
    pytest.param({"op": "complete", "id": 7}, "id: Must be a task's UUID", id="id-a-number"),
    pytest.param({"op": "complete"}, "id: Missing data for required field.", id="no-id"),
    pytest.param({"op": "update", "id": UNKNOWN_ID}, "task: Missing data for required field.",
                 id="update-without-task"),
    pytest.param({"op": "create"}, "task: Missing data for required field.",
                 id="create-without-task"),
    pytest.param({"op": "create", "task": "Buy milk"}, "task: Must be a JSON object",
                 id="task-not-an-object"),
    pytest.param({"op": "create", "task": {"title": ""}}, "task.title: Must be 1-200",
                 id="create-body-invalid"),
    pytest.param({"op": "create", "task": {"title": "x", "completed": True}},
                 "task.completed: Unknown field.", id="create-body-unknown-field"),
    pytest.param({"op": "update", "id": UNKNOWN_ID, "task": {"id": UNKNOWN_ID}},
                 "task.id: Read-only field; it cannot be set.", id="read-only-field"),
    pytest.param({"op": "update", "id": UNKNOWN_ID, "task": {"title": None}},
                 "task.title: Field may not be null.", id="title-null"),
    pytest.param({"op": "update", "id": UNKNOWN_ID, "task": {"tags": ["ok", ""]}},
                 "task.tags.1: Length must be between 1 and 50.", id="tag-item"),
    pytest.param({"op": "delete", "id": UNKNOWN_ID, "task": {}}, "task: Unknown field.",
                 id="field-of-another-op"),
    pytest.param({"op": "complete", "id": UNKNOWN_ID, "completed": "yes"},
                 "completed: Not a valid boolean.", id="completed-not-boolean"),
    pytest.param({"op": "complete", "id": UNKNOWN_ID, "if_match": "*"},
                 "if_match: Unknown field.", id="if-match-on-complete"),
    pytest.param({"op": "delete", "id": UNKNOWN_ID, "if_match": "abc"},
                 "if_match: Not `*` or a list of quoted ETags.", id="if-match-unquoted"),
    pytest.param({"op": "create", "ref": "has space", "task": {"title": "x"}},
                 "ref: Must be 1-100 visible ASCII characters.", id="ref-with-space"),
    pytest.param({"op": "update", "id": "$missing", "task": {}},
                 'id: No create in this batch has ref "missing".', id="ref-missing"),
]


@pytest.mark.parametrize(("operation", "message"), OPERATION_ERRORS)
def test_an_invalid_operation_is_400_naming_its_index_and_field(
    client: FlaskClient, operation: Any, message: str
) -> None:
    existing = create(client)
    before = snapshot(client)

    response = batch(client, {"op": "create", "task": {"title": "valid"}},
                     {"op": "complete", "id": existing["id"]}, operation)

    problem = assert_problem(response, 400)
    assert list(problem["errors"]["operations"]) == ["2"]
    [text] = problem["errors"]["operations"]["2"]
    assert text.startswith(message), text
    assert "operation 2: " in problem["detail"] and "no operation was applied" in problem["detail"]
    # The same errors by location and field, as for any body.
    assert list(problem["errors"]["json"]["operations"]) == ["2"]
    assert snapshot(client) == before


def test_refs_to_a_later_a_missing_or_a_duplicate_ref_are_400(client: FlaskClient) -> None:
    problem = assert_problem(batch(
        client,
        {"op": "complete", "id": "$later"},
        {"op": "create", "ref": "later", "task": {"title": "a"}},
        {"op": "create", "ref": "later", "task": {"title": "b"}},
        {"op": "delete", "id": "$nowhere"},
        {"op": "update", "id": "$later", "task": {"title": ""}},
    ), 400)

    assert problem["errors"]["operations"] == {
        "0": ['id: "$later" is the ref of operation 1, which comes later: an operation can '
              "only use the ref of an earlier create."],
        "2": ['ref: Operation 1 already has ref "later"; each create needs a ref of its own.'],
        "3": ['id: No create in this batch has ref "nowhere".'],
        "4": ["task.title: Must be 1-200 characters after trimming."],
    }
    assert problem["errors"]["json"]["operations"]["2"] == {"ref": [
        'Operation 1 already has ref "later"; each create needs a ref of its own.']}
    assert snapshot(client)["total"] == 0


BODY_ERRORS = [
    pytest.param({"operations": []}, "Send 1-100 operations", id="empty"),
    pytest.param({"operations": [{"op": "delete", "id": UNKNOWN_ID}] * 101},
                 "Send 1-100 operations", id="101-operations"),
    pytest.param({"operations": {"op": "create"}}, "Not a valid list.", id="not-a-list"),
    pytest.param({"operations": None}, "Field may not be null.", id="null"),
    pytest.param({}, "Missing data for required field.", id="missing"),
]


@pytest.mark.parametrize(("body", "message"), BODY_ERRORS)
def test_a_bad_list_of_operations_is_400_naming_operations(
    client: FlaskClient, body: Any, message: str
) -> None:
    problem = assert_problem(client.post(URL, json=body, headers=bearer(USER)), 400)

    assert list(problem["errors"]) == ["json"]  # no operation to name
    [text] = problem["errors"]["json"]["operations"]
    assert text.startswith(message), text
    assert snapshot(client)["total"] == 0


@pytest.mark.parametrize("body", [[{"op": "create", "task": {"title": "x"}}], "create", 1])
def test_a_body_that_is_not_an_object_is_400(client: FlaskClient, body: Any) -> None:
    problem = assert_problem(client.post(URL, json=body, headers=bearer(USER)), 400)

    assert problem["errors"] == {"json": {"_schema": [
        'The body must be a JSON object: {"operations": [...]}.']}}
    assert snapshot(client)["total"] == 0


def test_unknown_top_level_fields_no_body_and_not_json(client: FlaskClient) -> None:
    operations = [{"op": "create", "task": {"title": "x"}}]
    unknown = assert_problem(client.post(URL, json={"operations": operations, "atomic": False},
                                         headers=bearer(USER)), 400)
    assert unknown["errors"] == {"json": {"atomic": ["Unknown field."]}}
    assert_problem(client.post(URL, headers=bearer(USER)), 400)
    assert_problem(client.post(URL, data="{", content_type="application/json",
                               headers=bearer(USER)), 400)
    assert_problem(client.post(URL, data="operations", content_type="text/plain",
                               headers=bearer(USER)), 415)
    assert snapshot(client)["total"] == 0


def test_a_body_over_the_size_limit_is_413(client: FlaskClient) -> None:
    description = "d" * 1000
    operations = [{"op": "create", "task": {"title": f"t{i}", "description": description}}
                  for i in range(100)]

    assert_problem(client.post(URL, json={"operations": operations}, headers=bearer(USER)), 413)
    assert snapshot(client)["total"] == 0


# ---------------------------------------------------------------- users and limits


def test_another_users_tasks_are_404_and_their_path_403(client: FlaskClient) -> None:
    theirs = new_task(client, "someone-else", tags=["private"])

    problem = assert_problem(batch(client, {"op": "create", "task": {"title": "mine"}},
                                   {"op": "delete", "id": theirs["id"]}), 404)
    assert problem["errors"] == {"operations": {"1": ["Task not found."]}}
    assert snapshot(client)["total"] == 0
    forbidden = client.post("/api/someone-else/tasks/batch", headers=bearer(USER),
                            json={"operations": [{"op": "delete", "id": theirs["id"]}]})
    assert_problem(forbidden, 403)
    assert client.get(f"/api/someone-else/tasks/{theirs['id']}",
                      headers=bearer("someone-else")).status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_on_the_batch_path_are_405(client: FlaskClient, method: str) -> None:
    body = {"operations": [{"op": "create", "task": {"title": "x"}}]}
    response = client.open(URL, method=method, headers=bearer(USER),
                           json=body if method in ("PUT", "PATCH") else None)

    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert snapshot(client)["total"] == 0
    assert set(client.options(URL).headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_a_first_batch_creates_the_user(client: FlaskClient) -> None:
    answer = results(batch(client, {"op": "create", "task": {"title": "first"}},
                           user_id="brand-new-user"))
    assert answer[0]["task"]["user_id"] == "brand-new-user"


def test_the_rate_limit_counts_a_batch_as_one_write(database_url: str) -> None:
    client = create_app(make_config(
        database_url, RATELIMIT_ENABLED="true", RATELIMIT_KEY_PREFIX=f"t-{uuid.uuid4().hex}",
        RATELIMIT_WRITES_PER_USER="2 per minute",
    )).test_client()
    operations = [{"op": "create", "task": {"title": f"t{i}"}} for i in range(50)]

    for _ in range(2):
        assert len(results(batch(client, *operations))) == 50
    response = batch(client, *operations[:1])
    assert response.status_code == 429


def test_the_batch_is_documented(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/api/{user_id}/tasks/batch"]["post"]
    assert operation["operationId"] == "batchTasks"
    assert {"200", "400", "401", "403", "404", "409", "412", "413", "415", "429", "503"} <= set(
        operation["responses"])
    assert operation["responses"]["200"]["links"]["GetTask"]["parameters"]["task_id"] == (
        "$response.body#/results/0/id")
    items = spec["components"]["schemas"]["Batch"]["properties"]["operations"]
    assert (items["minItems"], items["maxItems"]) == (1, 100)
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in items["items"]["oneOf"]] == [
        "CreateOperation", "UpdateOperation", "CompleteOperation", "DeleteOperation"]
    schemas = spec["components"]["schemas"]
    assert schemas["CreateOperation"]["properties"]["task"] == {
        "$ref": "#/components/schemas/TaskCreate"}
    assert schemas["UpdateOperation"]["properties"]["task"] == {
        "$ref": "#/components/schemas/TaskUpdate"}
    assert all(schemas[name]["additionalProperties"] is False for name in (
        "Batch", "CreateOperation", "UpdateOperation", "CompleteOperation", "DeleteOperation"))

