"""Erasing an account (`DELETE /api/{user_id}?confirm=<user_id>`): nothing of the user is
left in any table, nothing of anyone else's goes, and the same token sees an empty account."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import assert_problem, bearer, new_task
from todo.extensions import db

USER = "user-a"
OTHER = "user-b"


def fill(client: FlaskClient, user_id: str) -> list[str]:
    """Tasks with tags, a deleted one (a tombstone), a kept idempotent response."""
    ids = [new_task(client, user_id, title=f"{user_id} {n}", tags=["home", f"t{n}"])["id"]
           for n in range(4)]
    assert client.delete(f"/api/{user_id}/tasks/{ids.pop()}",
                         headers=bearer(user_id)).status_code == 204
    response = client.post(f"/api/{user_id}/tasks", json={"title": "keyed"},
                           headers={**bearer(user_id), "Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201
    return [*ids, response.get_json()["id"]]


def rows_of(app: Flask, user_id: str, task_ids: list[str]) -> dict[str, int]:
    """How many rows of each table belong to the user."""
    counts: dict[str, int] = {}
    with app.app_context():
        tables = sa.MetaData()
        with warnings.catch_warnings():  # SQLite's expression indexes are not reflected
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            tables.reflect(db.engine)
        for table in tables.sorted_tables:
            if table.name == "alembic_version":
                continue
            if "user_id" in table.c:
                condition = table.c.user_id == user_id
            elif table.name == "users":
                condition = table.c.id == user_id
            elif "task_id" in table.c:
                condition = table.c.task_id.in_([uuid.UUID(i) for i in task_ids])
            else:
                pytest.fail(f"table {table.name}: no way to tell whose its rows are")
            query = sa.select(sa.func.count()).select_from(table).where(condition)
            counts[table.name] = db.session.execute(query).scalar_one()
    return counts


def test_erasure_leaves_no_row_of_the_user_in_any_table(app: Flask, client: FlaskClient) -> None:
    mine, theirs = fill(client, USER), fill(client, OTHER)
    before = rows_of(app, USER, mine)
    assert all(before[name] > 0 for name in ("users", "tasks", "tags", "task_tags",
                                             "task_tombstones", "idempotency_keys")), before
    others_before = rows_of(app, OTHER, theirs)

    response = client.delete(f"/api/{USER}?confirm={USER}", headers=bearer(USER))

    assert response.status_code == 204 and response.get_data() == b""
    assert rows_of(app, USER, mine) == dict.fromkeys(before, 0)
    assert rows_of(app, OTHER, theirs) == others_before


def test_after_erasure_the_same_token_sees_an_empty_account(client: FlaskClient) -> None:
    fill(client, USER)
    assert client.delete(f"/api/{USER}?confirm={USER}", headers=bearer(USER)).status_code == 204
    get: Any = lambda path: client.get(f"/api/{USER}{path}", headers=bearer(USER))  # noqa: E731
    assert get("/tasks").get_json()["total"] == 0
    assert get("/tags").get_json() == []
    assert get("/tasks/stats").get_json()["total"] == 0
    changes = get("/changes").get_json()
    assert (changes["tasks"], changes["deleted"]) == ([], [])
    assert new_task(client, USER, title="a new start")["title"] == "a new start"
    assert get("/tasks").get_json()["total"] == 1


@pytest.mark.parametrize("query", ["", "?confirm=", f"?confirm={OTHER}", f"?confirm={USER}x",
                                   f"?confirm={USER}&confirm={USER}", "?yes=1"])
def test_without_the_users_own_id_as_confirm_nothing_is_erased(
    app: Flask, client: FlaskClient, query: str
) -> None:
    mine = fill(client, USER)
    before = rows_of(app, USER, mine)
    response = client.delete(f"/api/{USER}{query}", headers=bearer(USER))
    problem = assert_problem(response, 400)
    assert problem["errors"]["query"]
    assert rows_of(app, USER, mine) == before


def test_another_users_account_cannot_be_erased(app: Flask, client: FlaskClient) -> None:
    theirs = fill(client, OTHER)
    before = rows_of(app, OTHER, theirs)
    assert_problem(client.delete(f"/api/{OTHER}?confirm={OTHER}", headers=bearer(USER)), 403)
    assert_problem(client.delete(f"/api/{OTHER}?confirm={OTHER}"), 401)
    assert rows_of(app, OTHER, theirs) == before


def test_erasing_an_account_that_never_wrote_is_204(client: FlaskClient) -> None:
    response = client.delete("/api/nobody?confirm=nobody", headers=bearer("nobody"))
    assert response.status_code == 204
