"""The validation rules of task bodies, one by one, on create (POST), PUT, PATCH and complete.

Every rejected body must be a 400 problem naming the field under `errors["json"]`, and must
leave the database exactly as it was: the tests compare the user's whole listing and tags
before and after.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import assert_problem, bearer, new_task

USER = "user-a"
ORIGINAL = {
    "title": "Original",
    "description": "original description",
    "priority": "Low",
    "due_date": "2026-01-15",
    "tags": ["keep"],
}
READ_ONLY_FIELDS = ("id", "user_id", "created_at", "updated_at")


# ---------------------------------------------------------------- helpers


class Target:
    """One way to send a task body: create (POST), PUT, PATCH or PATCH .../complete.

    A user-a task with known values exists beforehand, so "nothing changed" can be checked
    for every method against the user's listing and tags."""

    def __init__(self, client: FlaskClient, method: str) -> None:
        self.client = client
        self.method = method
        self.task = new_task(client, USER, **ORIGINAL)
        self.url = {
            "POST": f"/api/{USER}/tasks",
            "PUT": f"/api/{USER}/tasks/{self.task['id']}",
            "PATCH": f"/api/{USER}/tasks/{self.task['id']}",
            "COMPLETE": f"/api/{USER}/tasks/{self.task['id']}/complete",
        }[method]
        self.success_status = 201 if method == "POST" else 200

    @property
    def http_method(self) -> str:
        return "PATCH" if self.method == "COMPLETE" else self.method

    def fields(self, **fields: Any) -> dict[str, Any]:
        """A body with these fields; a create body also gets a valid title unless one is given."""
        if self.method == "POST":
            return {"title": "Created", **fields}
        return fields

    def send(self, body: Any) -> TestResponse:
        """Send `body` as JSON (None is sent as JSON `null`)."""
        return self.raw(json.dumps(body), "application/json")

    def raw(self, data: str | bytes, content_type: str | None) -> TestResponse:
        headers = bearer(USER)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.client.open(self.url, method=self.http_method, data=data, headers=headers)

    def stored(self, response: TestResponse) -> dict[str, Any]:
        """The task the successful `response` wrote, read back through GET."""
        task_id = response.get_json()["id"]
        got = self.client.get(f"/api/{USER}/tasks/{task_id}", headers=bearer(USER))
        assert got.status_code == 200
        stored: dict[str, Any] = got.get_json()
        assert stored == response.get_json()
        return stored


def snapshot(client: FlaskClient) -> tuple[bytes, bytes]:
    """Everything the user can read: all tasks (raw bytes) and all tags."""
    listing = client.get(f"/api/{USER}/tasks?limit=100", headers=bearer(USER))
    tags = client.get(f"/api/{USER}/tags?limit=100", headers=bearer(USER))
    assert listing.status_code == 200 and tags.status_code == 200
    return listing.get_data(), tags.get_data()


def assert_rejected(target: Target, body: Any, *fields: str) -> dict[str, Any]:
    """`body` is a 400 naming exactly `fields` under errors.json, and changes nothing.
    Returns the per-field errors."""
    before = snapshot(target.client)
    problem = assert_problem(target.send(body), 400)
    assert problem["title"] == "Bad Request"
    assert problem["detail"].startswith("Validation failed")
    errors: dict[str, Any] = problem["errors"]["json"]
    assert sorted(errors) == sorted(fields)
    for field in fields:
        assert field in problem["detail"]
        assert errors[field]
    assert snapshot(target.client) == before
    return errors


def messages(errors: Any) -> list[str]:
    """Every message string in a field's errors (a list, or a dict of item index -> list)."""
    if isinstance(errors, dict):
        return [text for value in errors.values() for text in messages(value)]
    assert isinstance(errors, list) and errors
    assert all(isinstance(text, str) and text for text in errors)
    return list(errors)


@pytest.fixture(params=["POST", "PUT", "PATCH"])
def target(request: pytest.FixtureRequest, client: FlaskClient) -> Target:
    """Create, PUT and PATCH: the three bodies that carry task fields."""
    return Target(client, request.param)


@pytest.fixture(params=["POST", "PUT", "PATCH", "COMPLETE"])
def any_target(request: pytest.FixtureRequest, client: FlaskClient) -> Target:
    """Every endpoint that takes a JSON body."""
    return Target(client, request.param)


@pytest.fixture(params=["PUT", "PATCH"])
def update(request: pytest.FixtureRequest, client: FlaskClient) -> Target:
    return Target(client, request.param)


# ---------------------------------------------------------------- title

LONG_200 = "a" * 200


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        ("Buy milk", "Buy milk"),
        ("x", "x"),
        ("  Buy milk  ", "Buy milk"),
        ("\t\nBuy milk\r\n", "Buy milk"),
        ("\u00a0Buy\u3000milk\u2003", "Buy\u3000milk"),  # inner whitespace is kept
        (LONG_200, LONG_200),
        (f"   {LONG_200}   ", LONG_200),
        ("é" * 200, "é" * 200),  # characters, not bytes
        ("😀" * 200, "😀" * 200),
    ],
    ids=["plain", "one-char", "spaces", "newlines", "unicode-spaces", "200", "200-padded",
         "200-accented", "200-emoji"],
)
def test_title_is_trimmed_and_stored_trimmed(target: Target, title: str, stored: str) -> None:
    response = target.send(target.fields(title=title))

    assert response.status_code == target.success_status, response.get_json()
    assert response.get_json()["title"] == stored
    assert target.stored(response)["title"] == stored


@pytest.mark.parametrize(
    "title",
    ["", " ", " \t\n ", "\u00a0\u3000", "a" * 201, f"  {'a' * 201}  ", "é" * 201],
    ids=["empty", "space", "whitespace", "unicode-whitespace", "201", "201-padded",
         "201-accented"],
)
def test_title_must_be_1_to_200_characters_after_trimming(target: Target, title: str) -> None:
    errors = assert_rejected(target, target.fields(title=title), "title")

    assert messages(errors["title"]) == ["Must be 1-200 characters after trimming."]


def test_title_is_required_on_create(client: FlaskClient) -> None:
    target = Target(client, "POST")

    errors = assert_rejected(target, {"description": "no title"}, "title")

    assert messages(errors["title"]) == ["Missing data for required field."]


def test_title_null_is_rejected(target: Target) -> None:
    errors = assert_rejected(target, {"title": None}, "title")

    assert messages(errors["title"]) == ["Field may not be null."]


def test_title_is_optional_on_update(update: Target) -> None:
    response = update.send({"priority": "High"})

    assert response.status_code == 200
    assert update.stored(response)["title"] == "Original"


# ---------------------------------------------------------------- description


@pytest.mark.parametrize(
    "description",
    ["2 litres", "", "d" * 1000, "é" * 1000, None],
    ids=["plain", "empty", "1000", "1000-accented", "null"],
)
def test_description_up_to_1000_characters_or_null(target: Target, description: Any) -> None:
    response = target.send(target.fields(description=description))

    assert response.status_code == target.success_status, response.get_json()
    assert target.stored(response)["description"] == description


@pytest.mark.parametrize("description", ["d" * 1001, "é" * 1001], ids=["1001", "1001-accented"])
def test_description_over_1000_characters_is_rejected(target: Target, description: str) -> None:
    errors = assert_rejected(target, target.fields(description=description), "description")

    assert messages(errors["description"]) == ["Longer than maximum length 1000."]


# ---------------------------------------------------------------- priority


@pytest.mark.parametrize(
    ("priority", "canonical"),
    [("High", "High"), ("high", "High"), ("HIGH", "High"), ("Medium", "Medium"),
     ("mEdIuM", "Medium"), ("low", "Low"), ("LOW", "Low")],
)
def test_priority_is_case_insensitive_and_returned_canonical(
    target: Target, priority: str, canonical: str
) -> None:
    response = target.send(target.fields(priority=priority))

    assert response.status_code == target.success_status, response.get_json()
    assert response.get_json()["priority"] == canonical
    assert target.stored(response)["priority"] == canonical


@pytest.mark.parametrize(
    "priority",
    ["urgent", "", "Highest", "H", "none", 1, 0, None, True, ["High"], {"value": "High"}],
)
def test_invalid_priorities_are_rejected(target: Target, priority: Any) -> None:
    assert_rejected(target, target.fields(priority=priority), "priority")


# ---------------------------------------------------------------- due_date


@pytest.mark.parametrize(
    "due_date",
    ["2026-12-01", "2020-01-01", "2028-02-29", "1999-12-31", None],
    ids=["future", "past", "leap-day", "last-century", "null"],
)
def test_due_date_is_an_iso_date_or_null(target: Target, due_date: str | None) -> None:
    response = target.send(target.fields(due_date=due_date))

    assert response.status_code == target.success_status, response.get_json()
    assert target.stored(response)["due_date"] == due_date


@pytest.mark.parametrize(
    "due_date",
    [
        "2026-13-01", "2026-02-30", "2027-02-29", "2026-00-10", "2026-12-32",
        "20261201", "2026-12-01T00:00:00", "2026-12-01T00:00:00Z", "2026-12-1", "26-12-01",
        "2026/12/01", "12/01/2026", "2026-W48-1", "2026-335", " 2026-12-01", "2026-12-01 ",
        "", "tomorrow", 20261201, 1764547200, True, ["2026-12-01"], "2026-12-01\n",
        "\u0662\u0660\u0662\u0666-\u0661\u0662-\u0660\u0661",
    ],
)
def test_due_date_must_be_exactly_yyyy_mm_dd(target: Target, due_date: Any) -> None:
    errors = assert_rejected(target, target.fields(due_date=due_date), "due_date")
    if isinstance(due_date, str):  # the message says what to send instead
        assert "YYYY-MM-DD" in errors["due_date"][0]


# ---------------------------------------------------------------- tags

TWENTY = [f"tag{i:02d}" for i in range(20)]


@pytest.mark.parametrize(
    ("tags", "stored"),
    [
        (["home"], ["home"]),
        (["  home  ", "\twork\n"], ["home", "work"]),
        (["b", "A", "c"], ["A", "b", "c"]),
        (["Work", "work", "WORK", " work "], ["Work"]),
        (["t" * 50], ["t" * 50]),
        ([f"  {'t' * 50}  "], ["t" * 50]),
        (["x"], ["x"]),
        ([], []),
        (TWENTY, TWENTY),
        (TWENTY + [name.upper() for name in TWENTY[:5]], TWENTY),
        (TWENTY + TWENTY + TWENTY, TWENTY),
    ],
    ids=["one", "trimmed", "sorted", "duplicates-collapse", "50", "50-padded", "1", "empty",
         "20", "25-collapsing-to-20", "60-collapsing-to-20"],
)
def test_valid_tags(target: Target, tags: list[str], stored: list[str]) -> None:
    response = target.send(target.fields(tags=tags))

    assert response.status_code == target.success_status, response.get_json()
    assert response.get_json()["tags"] == stored
    assert target.stored(response)["tags"] == stored


@pytest.mark.parametrize(
    "item",
    ["", "   ", "\u3000", "t" * 51, f"  {'t' * 51}  ", 1, 1.5, True, None, ["a"], {"a": 1},
     "a\x00b"],
    ids=["empty", "whitespace", "unicode-whitespace", "51", "51-padded", "int", "float", "bool",
         "null", "list", "object", "nul"],
)
def test_each_tag_must_be_a_string_of_1_to_50_characters(target: Target, item: Any) -> None:
    errors = assert_rejected(target, target.fields(tags=["fine", item]), "tags")

    # The failing item is named by its index.
    assert list(errors["tags"]) == ["1"]
    assert messages(errors["tags"])


def test_more_than_20_distinct_tags_are_rejected(target: Target) -> None:
    errors = assert_rejected(target, target.fields(tags=[*TWENTY, "one-more"]), "tags")

    assert messages(errors["tags"]) == ["At most 20 distinct tags per task."]


@pytest.mark.parametrize("tags", ["a", "a,b", {"a": 1}, 1, True, None])
def test_tags_must_be_a_list(target: Target, tags: Any) -> None:
    assert_rejected(target, target.fields(tags=tags), "tags")


# ---------------------------------------------------------------- completed and other types


@pytest.mark.parametrize("value", [True, False])
def test_completed_takes_json_booleans(update: Target, value: bool) -> None:
    response = update.send({"completed": value})

    assert response.status_code == 200
    assert update.stored(response)["completed"] is value


@pytest.mark.parametrize("method", ["PUT", "PATCH", "COMPLETE"])
@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, "yes", [], {}])
def test_completed_must_be_a_json_boolean(client: FlaskClient, method: str, value: Any) -> None:
    target = Target(client, method)

    errors = assert_rejected(target, {"completed": value}, "completed")

    assert messages(errors["completed"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", 5), ("title", True), ("title", ["x"]), ("title", {"text": "x"}),
        ("description", 5), ("description", ["x"]), ("description", False),
        ("priority", 2), ("due_date", {"year": 2026}), ("tags", "a"),
    ],
)
def test_wrong_json_types_are_rejected(target: Target, field: str, value: Any) -> None:
    errors = assert_rejected(target, target.fields(**{field: value}), field)

    assert messages(errors[field])


def test_every_invalid_field_is_named_at_once(target: Target) -> None:
    body = target.fields(title="", priority="urgent", due_date="soon", tags="a", foo=1)

    assert_rejected(target, body, "title", "priority", "due_date", "tags", "foo")


def test_completed_is_not_a_create_field(client: FlaskClient) -> None:
    target = Target(client, "POST")

    errors = assert_rejected(target, {"title": "New", "completed": True}, "completed")

    assert messages(errors["completed"]) == ["Unknown field."]


# ---------------------------------------------------------------- unknown and read-only fields


@pytest.mark.parametrize(
    "fields",
    [{"foo": 1}, {"Title": "x"}, {"done": True}, {"tag": ["a"]}, {"due": "2026-12-01"},
     {"foo": 1, "bar": None}],
)
def test_unknown_fields_are_rejected_naming_them(
    any_target: Target, fields: dict[str, Any]
) -> None:
    errors = assert_rejected(any_target, any_target.fields(**fields), *fields)

    for name in fields:
        assert messages(errors[name]) == ["Unknown field."]


@pytest.mark.parametrize("field", READ_ONLY_FIELDS)
def test_read_only_fields_are_rejected_naming_them(any_target: Target, field: str) -> None:
    value = {**any_target.task, "id": "9c1a2b3c-0000-4000-8000-000000000000",
             "user_id": "someone-else"}[field]

    errors = assert_rejected(any_target, any_target.fields(**{field: value}), field)

    assert messages(errors[field]) == ["Read-only field; it cannot be set."]


def test_sending_back_a_whole_task_names_every_read_only_field(update: Target) -> None:
    # What a frontend does when it PUTs the object it got: the read-only fields must go.
    body = {**update.task, "title": "Changed"}

    assert_rejected(update, body, *READ_ONLY_FIELDS)


def test_read_only_fields_with_their_current_values_are_rejected_too(update: Target) -> None:
    body = {field: update.task[field] for field in READ_ONLY_FIELDS}

    assert_rejected(update, body, *READ_ONLY_FIELDS)


# ---------------------------------------------------------------- NUL characters


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "Buy\x00milk"),
        ("title", "\x00"),
        ("description", "2\x00litres"),
        ("priority", "High\x00"),
        ("due_date", "2026-12-01\x00"),
        ("tags", ["home\x00"]),
    ],
)
def test_nul_characters_are_rejected(target: Target, field: str, value: Any) -> None:
    assert_rejected(target, target.fields(**{field: value}), field)


# ---------------------------------------------------------------- the body itself


def assert_body_rejected(target: Target, response: TestResponse, status: int,
                         before: tuple[bytes, bytes]) -> dict[str, Any]:
    problem = assert_problem(response, status)
    assert snapshot(target.client) == before
    return problem


@pytest.mark.parametrize(
    "data",
    [
        "{bad",
        "{'title': 'x'}",
        '{"title": "x",}',
        '{"title": "x"',
        "title=x",
        "NaN",
        '{"title": NaN}',
        b"\xff\xfe{}",
        '{"title": "\xff"}'.encode("latin-1"),
        '{"title": ' + "[" * 2000 + "]" * 2000 + "}",
    ],
    ids=["brace", "single-quotes", "trailing-comma", "unterminated", "form", "nan",
         "nan-value", "bad-utf8", "bad-utf8-string", "too-deep"],
)
def test_a_body_that_is_not_json_is_400(any_target: Target, data: str | bytes) -> None:
    before = snapshot(any_target.client)

    problem = assert_body_rejected(any_target, any_target.raw(data, "application/json"), 400,
                                   before)

    assert problem["errors"]["json"] == {"_schema": ["Invalid JSON body."]}


@pytest.mark.parametrize("data", ["[]", '"x"', "1", "null", "true", '[{"title": "x"}]'])
def test_json_that_is_not_an_object_is_400(any_target: Target, data: str) -> None:
    before = snapshot(any_target.client)

    problem = assert_body_rejected(any_target, any_target.raw(data, "application/json"), 400,
                                   before)

    assert problem["errors"]["json"] == {
        "_schema": ['The body must be a JSON object, e.g. {"title": "..."}.']
    }


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/xml", "text/json"],
)
def test_a_body_with_a_non_json_content_type_is_415(any_target: Target, content_type: str) -> None:
    before = snapshot(any_target.client)
    body = json.dumps(any_target.fields(priority="High"))

    problem = assert_body_rejected(any_target, any_target.raw(body, content_type), 415, before)

    assert problem["title"] == "Unsupported Media Type"


def test_a_json_body_without_a_content_type_is_415(any_target: Target) -> None:
    before = snapshot(any_target.client)
    body = json.dumps(any_target.fields(priority="High"))

    assert_body_rejected(any_target, any_target.raw(body, None), 415, before)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_content_types_with_parameters_or_suffix_are_accepted(
    target: Target, content_type: str
) -> None:
    response = target.raw(json.dumps(target.fields(priority="High")), content_type)

    assert response.status_code == target.success_status, response.get_json()
    assert target.stored(response)["priority"] == "High"


LIMIT = 64 * 1024


def padded_body(target: Target, size: int) -> str:
    """A valid JSON body of exactly `size` bytes (JSON allows trailing whitespace)."""
    body = json.dumps(target.fields(priority="High"))
    return body + " " * (size - len(body))


def test_a_body_over_64_kib_is_413(any_target: Target) -> None:
    before = snapshot(any_target.client)
    oversized = json.dumps(any_target.fields(description="d" * LIMIT))

    problem = assert_body_rejected(any_target, any_target.raw(oversized, "application/json"),
                                   413, before)

    assert problem["title"] == "Request Entity Too Large"


def test_a_body_of_64_kib_plus_one_byte_is_413(any_target: Target) -> None:
    before = snapshot(any_target.client)
    response = any_target.raw(padded_body(any_target, LIMIT + 1), "application/json")

    assert_body_rejected(any_target, response, 413, before)


def test_a_body_of_exactly_64_kib_is_accepted(target: Target) -> None:
    response = target.raw(padded_body(target, LIMIT), "application/json")

    assert response.status_code == target.success_status, response.get_json()
    assert target.stored(response)["priority"] == "High"


def test_a_body_over_64_kib_is_413_whatever_its_content_type(any_target: Target) -> None:
    before = snapshot(any_target.client)

    assert_body_rejected(any_target, any_target.raw("x" * (LIMIT + 1), "text/plain"), 413, before)


# ---------------------------------------------------------------- PATCH .../complete bodies


def test_complete_accepts_only_completed(client: FlaskClient) -> None:
    target = Target(client, "COMPLETE")

    errors = assert_rejected(target, {"completed": True, "title": "x"}, "title")

    assert messages(errors["title"]) == ["Unknown field."]


@pytest.mark.parametrize("value", [True, False])
def test_complete_with_a_valid_body_after_a_rejected_one(client: FlaskClient, value: bool) -> None:
    target = Target(client, "COMPLETE")
    assert_rejected(target, {"completed": "true"}, "completed")

    response = target.send({"completed": value})

    assert response.status_code == 200
    assert target.stored(response)["completed"] is value
