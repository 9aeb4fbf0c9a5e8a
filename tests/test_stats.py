"""GET /api/{user_id}/tasks/stats: counts against a Python recount of random data, the
listing's filters and `today`, bad arguments, routing next to `/tasks/{task_id}`, isolation.

The expected counts come from `reference_filter` (tests/test_listing.py: an independent
Python reading of the listing's filters) and a recount of its matches here, on random tasks
made through the API and queried with random filters and random `today`s, for several seeds.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task
from tests.test_listing import Params, reference_filter
from todo.tasks import routes

USER = "user-a"
OTHER = "user-b"
PROBLEM = "application/problem+json"
KEYS = {"total", "pending", "completed", "overdue", "due_today", "by_priority"}
Task = dict[str, Any]


def stats_response(client: FlaskClient, params: Any = (), user: str = USER) -> Any:
    return client.get(f"/api/{user}/tasks/stats", query_string=params, headers=bearer(user))


def stats(client: FlaskClient, params: Any = (), user: str = USER) -> dict[str, Any]:
    response = stats_response(client, params, user)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert set(body) == KEYS and set(body["by_priority"]) == {"High", "Medium", "Low"}
    return body


def recount(tasks: list[Task], params: Params, today: date) -> dict[str, Any]:
    """What the contract says the counts are: the listing's matches, counted by state."""
    matched = reference_filter(tasks, params)
    pending = [task for task in matched if not task["completed"]]
    day = today.isoformat()  # ISO dates compare as text
    return {
        "total": len(matched),
        "pending": len(pending),
        "completed": len(matched) - len(pending),
        "overdue": sum(1 for t in pending if t["due_date"] is not None and t["due_date"] < day),
        "due_today": sum(1 for t in pending if t["due_date"] == day),
        "by_priority": {
            priority: sum(1 for t in pending if t["priority"] == priority)
            for priority in ("High", "Medium", "Low")
        },
    }


def assert_bad_query(response: Any, parameter: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 400 and parameter in body["detail"]
    assert parameter in body["errors"]["query"], body


# ---------------------------------------------------------------- random data and a recount

WORDS = ["milk", "Milk", "bread", "report", "REPORT", "call", "50%", "a_b", "back\\slash",
         "plan", "trip", "bike"]
TAGS = ["work", "Home", "errands", "urgent", "misc"]
TODAY = datetime.now(UTC).date()


def random_tasks(client: FlaskClient, rng: random.Random, count: int) -> list[Task]:
    """`count` random tasks through the API (random case in priorities and tag names, due
    dates around today, a third completed); as GET returns them afterwards."""
    tasks = []
    for _ in range(count):
        fields: dict[str, Any] = {
            "title": " ".join(rng.sample(WORDS, rng.randint(1, 3))),
            "priority": rng.choice(["High", "medium", "LOW", "Low", "high"]),
            "tags": [rng.choice([name, name.upper(), name.lower()])
                     for name in rng.sample(TAGS, rng.randint(0, 3))],
        }
        if rng.random() < 0.5:
            fields["description"] = " ".join(rng.sample(WORDS, rng.randint(0, 4)))
        if rng.random() < 0.7:
            fields["due_date"] = (TODAY + timedelta(days=rng.randint(-6, 6))).isoformat()
        task = new_task(client, USER, **fields)
        if rng.random() < 0.35:
            response = client.patch(f"/api/{USER}/tasks/{task['id']}/complete",
                                    headers=bearer(USER))
            assert response.status_code == 200
            task = response.get_json()
        tasks.append(task)
    return tasks


def random_filters(rng: random.Random) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        word = rng.choice(WORDS)
        start = rng.randrange(len(word))
        params.append(("search", word[start:start + rng.randint(1, 4)]))
    if rng.random() < 0.4:
        params.append(("priority", rng.choice(["all", "High", "medium", "LOW"])))
    if rng.random() < 0.4:
        names = rng.sample([*TAGS, "nowhere"], rng.randint(1, 3))
        params += [(rng.choice(["tags", "tags[]"]), rng.choice([n, n.upper()])) for n in names]
        if rng.random() < 0.5:
            params.append(("tag_mode", rng.choice(["any", "all"])))
    if rng.random() < 0.3:
        params.append(("due_from", (TODAY + timedelta(days=rng.randint(-7, 4))).isoformat()))
    if rng.random() < 0.3:
        params.append(("due_to", (TODAY + timedelta(days=rng.randint(-4, 7))).isoformat()))
    return params


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_counts_equal_a_recount_of_random_data(client: FlaskClient, seed: int) -> None:
    rng = random.Random(seed)
    tasks = random_tasks(client, rng, rng.randint(25, 45))
    seen_nonzero = {key: False for key in ("overdue", "due_today", "completed")}
    for _ in range(40):
        params = random_filters(rng)
        if rng.random() < 0.8:
            today = TODAY + timedelta(days=rng.randint(-8, 8))
            params.append(("today", today.isoformat()))
            expected = recount(tasks, params, today)
            assert stats(client, params) == expected, params
        else:  # default today: the UTC date (midnight may pass during the request)
            before = datetime.now(UTC).date()
            body = stats(client, params)
            after = datetime.now(UTC).date()
            assert body in (recount(tasks, params, before), recount(tasks, params, after)), params
            expected = body
        for key in seen_nonzero:
            seen_nonzero[key] |= expected[key] > 0
    assert all(seen_nonzero.values()), seen_nonzero  # the data exercised every count
    # No filter: every task.
    assert stats(client, [("today", TODAY.isoformat())]) == recount(tasks, [], TODAY)


def test_counts_by_hand(client: FlaskClient) -> None:
    """Expectations written out, independent of the reference implementation."""
    day = "2026-03-10"
    for title, priority, due, tags, done in [
        ("overdue high", "High", "2026-03-09", ["work"], False),
        ("overdue but done", "High", "2026-03-01", ["work"], True),
        ("due today", "Low", day, ["home"], False),
        ("due today, done", "Low", day, [], True),
        ("later", "Medium", "2026-03-11", ["work", "home"], False),
        ("no date", "Medium", None, [], False),
    ]:
        fields: dict[str, Any] = {"title": title, "priority": priority, "tags": tags}
        if due:
            fields["due_date"] = due
        task = new_task(client, USER, **fields)
        if done:
            client.patch(f"/api/{USER}/tasks/{task['id']}/complete", headers=bearer(USER))

    def counts(total: int, pending: int, overdue: int, due_today: int,
               high: int, medium: int, low: int) -> dict[str, Any]:
        return {"total": total, "pending": pending, "completed": total - pending,
                "overdue": overdue, "due_today": due_today,
                "by_priority": {"High": high, "Medium": medium, "Low": low}}

    assert stats(client, {"today": day}) == counts(6, 4, 1, 1, 1, 2, 1)
    assert stats(client, {"today": "2026-03-11"}) == counts(6, 4, 2, 1, 1, 2, 1)
    assert stats(client, {"today": "2000-01-01"}) == counts(6, 4, 0, 0, 1, 2, 1)
    assert stats(client, {"today": day, "tags": "WORK"}) == counts(3, 2, 1, 0, 1, 1, 0)
    assert stats(client, [("today", day), ("tags", "work"), ("tags[]", "home"),
                          ("tag_mode", "all")]) == counts(1, 1, 0, 0, 0, 1, 0)
    assert stats(client, {"today": day, "priority": "low"}) == counts(2, 1, 0, 1, 0, 0, 1)
    assert stats(client, {"today": day, "search": "DUE"}) == counts(4, 2, 1, 1, 1, 0, 1)
    assert stats(client, {"today": day, "due_from": day}) == counts(3, 2, 0, 1, 0, 1, 1)
    assert stats(client, {"today": day, "due_to": "2026-03-09"}) == counts(2, 1, 1, 0, 1, 0, 0)
    assert stats(client, {"today": day, "search": "nothing"}) == counts(0, 0, 0, 0, 0, 0, 0)


def test_an_empty_account_counts_zero(client: FlaskClient) -> None:
    zero = {"total": 0, "pending": 0, "completed": 0, "overdue": 0, "due_today": 0,
            "by_priority": {"High": 0, "Medium": 0, "Low": 0}}
    assert stats(client) == zero
    assert stats(client, {"today": "2026-01-01", "search": "x", "tags": "a"}) == zero


def test_default_today_is_the_utc_date_when_the_request_runs(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed query strings are cached, so the default must not be fixed at parse time."""
    new_task(client, USER, title="due", due_date="2026-05-02")

    class Clock(datetime):
        current = datetime(2026, 5, 1, 23, 59, tzinfo=UTC)

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return cls.current

    monkeypatch.setattr(routes, "datetime", Clock)
    assert stats(client)["due_today"] == 0
    Clock.current = datetime(2026, 5, 2, 0, 0, tzinfo=UTC)
    assert stats(client)["due_today"] == 1  # same query string, a new day
    Clock.current = datetime(2026, 5, 3, 0, 0, tzinfo=UTC)
    assert stats(client)["overdue"] == 1


def test_sqlite_runs_aggregate_filter_clauses() -> None:
    """`count(*) FILTER (WHERE ...)` needs SQLite 3.30 or later (Python 3.11's builds have
    3.39+); an older library would fail every stats request."""
    assert sqlite3.sqlite_version_info >= (3, 30)


# ---------------------------------------------------------------- isolation


def test_counts_never_include_another_users_tasks(client: FlaskClient) -> None:
    new_task(client, USER, title="mine", tags=["shared"], due_date="2026-01-01")
    for priority in ("High", "Medium", "Low"):
        new_task(client, OTHER, title="mine too?", tags=["shared"], priority=priority,
                 due_date="2026-01-01")
    for params in ([], [("tags", "shared")], [("search", "mine")], [("priority", "High")],
                   [("due_from", "2026-01-01")]):
        body = stats(client, [*params, ("today", "2026-06-01")])
        assert body["total"] <= 1, params
        assert body["overdue"] == body["total"]
    assert stats(client, {"today": "2026-06-01"}, user=OTHER)["overdue"] == 3
    # Another user's path with one's own token is refused, whatever the query.
    response = client.get(f"/api/{OTHER}/tasks/stats", headers=bearer(USER))
    assert response.status_code == 403 and response.mimetype == PROBLEM
    assert stats(client, user="nobody")["total"] == 0


# ---------------------------------------------------------------- routing next to task ids


def allowed(response: Any) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


def test_stats_is_not_a_task_id(client: FlaskClient) -> None:
    task = new_task(client, USER, title="a task")
    assert stats(client)["total"] == 1
    got = client.get(f"/api/{USER}/tasks/{task['id']}", headers=bearer(USER))
    assert got.status_code == 200 and got.get_json() == task
    # The methods only a task has are not the counts': 405 with the counts' methods.
    for method, body in (("PUT", {"title": "x"}), ("PATCH", {"title": "x"}), ("DELETE", None),
                         ("POST", {"title": "x"})):
        response = client.open(f"/api/{USER}/tasks/stats", method=method, json=body,
                               headers=bearer(USER))
        assert response.status_code == 405 and response.mimetype == PROBLEM, method
        assert allowed(response) == {"GET", "HEAD", "OPTIONS"}
    options = client.options(f"/api/{USER}/tasks/stats")
    assert options.status_code == 204 and allowed(options) == {"GET", "HEAD", "OPTIONS"}
    # Any other segment is a task id: not a UUID, so no such task.
    for path in ("Stats", "STATS", "statsx", "stats%0A", "stats%20"):
        response = client.get(f"/api/{USER}/tasks/{path}", headers=bearer(USER))
        assert response.status_code == 404 and response.mimetype == PROBLEM, path
        assert response.get_json()["detail"] == "Task not found.", path
    for method, path in (("GET", "stats/"), ("GET", "stats/x"), ("PATCH", "stats/complete")):
        response = client.open(f"/api/{USER}/tasks/{path}", method=method, headers=bearer(USER))
        assert response.status_code == 404 and response.mimetype == PROBLEM, path
    assert stats(client)["total"] == 1
    assert client.get(f"/api/{USER}/tasks/{task['id']}", headers=bearer(USER)).get_json() == task


def test_stats_needs_a_token(client: FlaskClient) -> None:
    response = client.get(f"/api/{USER}/tasks/stats")
    assert response.status_code == 401 and response.mimetype == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(("query", "parameter"), [
    # The listing's other parameters are not the counts'.
    ("status=pending", "status"),
    ("status=all", "status"),
    ("sort_by=title", "sort_by"),
    ("sort_direction=asc", "sort_direction"),
    ("limit=10", "limit"),
    ("offset=0", "offset"),
    ("page=2", "page"),
    ("Today=2026-01-01", "Today"),
    # Bad values.
    ("today=2026-02-30", "today"),
    ("today=20260101", "today"),
    ("today=tomorrow", "today"),
    ("today=", "today"),
    ("today=2026-01-01%0A", "today"),
    ("today=%D9%A2%D9%A0%D9%A2%D9%A6-01-01", "today"),
    ("due_from=2026-13-01", "due_from"),
    ("due_to=2026-02-30", "due_to"),
    ("due_to=", "due_to"),
    ("priority=urgent", "priority"),
    ("tag_mode=some", "tag_mode"),
    (f"search={'s' * 201}", "search"),
    ("tags=", "tags"),
    (f"tags[]={'t' * 51}", "tags[]"),
    # Repeated single-valued parameters.
    ("today=2026-01-01&today=2026-01-02", "today"),
    ("today=2026-01-01&today=2026-01-01", "today"),
    ("priority=High&priority=Low", "priority"),
    ("search=a&search=b", "search"),
    ("tag_mode=all&tag_mode=any", "tag_mode"),
    ("due_from=2026-01-01&due_from=2026-01-02", "due_from"),
    ("due_to=2026-01-01&due_to=2026-01-02", "due_to"),
])
def test_bad_arguments_are_400_naming_the_parameter(
    client: FlaskClient, query: str, parameter: str
) -> None:
    assert_bad_query(client.get(f"/api/{USER}/tasks/stats?{query}", headers=bearer(USER)),
                     parameter)


def test_every_bad_parameter_is_named(client: FlaskClient) -> None:
    response = client.get(f"/api/{USER}/tasks/stats?status=all&limit=5&today=x&priority=no",
                          headers=bearer(USER))
    assert_bad_query(response, "today")
    assert set(response.get_json()["errors"]["query"]) == {"status", "limit", "today", "priority"}


@pytest.mark.parametrize("query", [
    "today=2024-02-29", "today=0001-01-01", "today=9999-12-31", "priority=ALL",
    "tags=a&tags=b&tags[]=c", "due_from=2026-05-01&due_to=2026-01-01", "search=",
])
def test_boundary_values_are_accepted(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/{USER}/tasks/stats?{query}", headers=bearer(USER))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == 0


def test_a_search_gets_the_search_time_limit(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the listing, a search (a pattern tested against every task) runs under
    `DB_SEARCH_TIMEOUT_MS`; other counts under the usual statement timeout."""
    given: list[int | None] = []
    real_reading = routes.reading

    def recording(statement_timeout_ms: int | None = None) -> Any:
        given.append(statement_timeout_ms)
        return real_reading(statement_timeout_ms)

    monkeypatch.setattr(routes, "reading", recording)
    stats(client, {"search": "milk"})
    stats(client, {"tags": "milk"})
    stats(client, {"search": ""})  # an empty search is no search
    assert given == [client.application.config["DB_SEARCH_TIMEOUT_MS"], None, None]
