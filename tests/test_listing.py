"""GET /api/{user_id}/tasks: the envelope, every filter, every order, pagination, bad arguments.

The expected results come from `reference_listing`, an independent Python reading of the
contract (API.md, "Listing"), compared against the service on a dataset full of ties: equal
titles in different case, equal due dates, equal priorities, equal timestamps. A fake clock
(`clock`) gives every write a chosen timestamp, so ties on `created_at`/`updated_at` are exact
and the `id` tie-break is exercised; the expectations are still computed from the returned
`created_at`/`updated_at`/`id` values, never from the order of creation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import bearer, new_task
from todo.tasks import listing as listing_module
from todo.tasks import writes

USER = "user-a"
OTHER = "user-b"
Params = Sequence[tuple[str, str]]
Task = dict[str, Any]

SORT_KEYS = ("created_at", "updated_at", "title", "due_date", "priority")
DIRECTIONS = ("asc", "desc")
SORTS = list(itertools.product(SORT_KEYS, DIRECTIONS))
PROBLEM = "application/problem+json"

# ---------------------------------------------------------------- clock and helpers

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def stamp(second: float) -> str:
    """The API's rendering of BASE + `second`."""
    return (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Clock:
    now: datetime = BASE

    def at(self, second: float) -> None:
        self.now = BASE + timedelta(seconds=second)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Every write made while this fixture is active is stamped with `clock.now`."""
    fake = Clock()
    monkeypatch.setattr(writes, "utc_now", lambda: fake.now)
    return fake


def listing(client: FlaskClient, params: Params | dict[str, Any] = (), user: str = USER) -> Any:
    return client.get(f"/api/{user}/tasks", query_string=params, headers=bearer(user))


def ok_page(client: FlaskClient, params: Params | dict[str, Any] = (), user: str = USER) -> Any:
    response = listing(client, params, user)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"data", "total", "limit", "offset"}
    return body


def all_ids(client: FlaskClient, params: Params = ()) -> tuple[list[str], int]:
    """Ids of every match (one page of 100) and the reported total."""
    body = ok_page(client, [*params, ("limit", "100")])
    return [task["id"] for task in body["data"]], body["total"]


def titles(tasks: Iterable[Task]) -> list[str]:
    return [task["title"] for task in tasks]


def get_task(client: FlaskClient, task_id: str) -> Task:
    response = client.get(f"/api/{USER}/tasks/{task_id}", headers=bearer(USER))
    assert response.status_code == 200
    task: Task = response.get_json()
    return task


def make_tasks(
    client: FlaskClient, clock: Clock, *specs: tuple[float, dict[str, Any]]
) -> list[Task]:
    """Create tasks, each at its own (possibly shared) second; returns them in spec order."""
    created = []
    for second, fields in specs:
        clock.at(second)
        task = new_task(client, USER, **fields)
        assert task["created_at"] == task["updated_at"] == stamp(second), "clock not applied"
        created.append(task)
    return created


def assert_bad_query(response: Any, parameter: str) -> None:
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 400
    assert isinstance(body["detail"], str) and parameter in body["detail"]
    assert parameter in body["errors"]["query"], body


# ---------------------------------------------------------------- the reference implementation

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}


def reference_filter(tasks: Iterable[Task], params: Params) -> list[Task]:
    """Which tasks the contract says match `params`."""
    single = dict(params)
    search = single.get("search")
    status = single.get("status", "all")
    priority = single.get("priority", "all").lower()
    names = {value.strip().casefold() for name, value in params if name in ("tags", "tags[]")}
    tag_mode = single.get("tag_mode", "any")
    due_from, due_to = single.get("due_from"), single.get("due_to")

    def matches(task: Task) -> bool:
        if search:
            needle = search.casefold()
            haystacks = [task["title"], task["description"] or ""]
            if not any(needle in text.casefold() for text in haystacks):
                return False
        if status != "all" and task["completed"] != (status == "completed"):
            return False
        if priority != "all" and task["priority"].lower() != priority:
            return False
        if names:
            own = {tag.casefold() for tag in task["tags"]}
            if tag_mode == "all" and not names <= own or tag_mode == "any" and not names & own:
                return False
        if (due_from or due_to) and task["due_date"] is None:
            return False
        if due_from and task["due_date"] < due_from:  # ISO dates compare as text
            return False
        return not (due_to and task["due_date"] > due_to)

    return [task for task in tasks if matches(task)]


def reference_order(tasks: Iterable[Task], sort_by: str, direction: str) -> list[Task]:
    """The contract's order: the key, then created_at descending, then id (ascending)."""
    descending = direction == "desc"
    ordered = sorted(tasks, key=lambda task: task["id"])
    if sort_by == "created_at":
        # created_at is the key itself; its ties fall through to the id.
        return sorted(ordered, key=lambda task: task["created_at"], reverse=descending)
    ordered.sort(key=lambda task: task["created_at"], reverse=True)  # stable: id stays below
    if sort_by == "due_date":
        dated = [task for task in ordered if task["due_date"] is not None]
        undated = [task for task in ordered if task["due_date"] is None]
        return sorted(dated, key=lambda task: task["due_date"], reverse=descending) + undated
    key: Callable[[Task], Any] = {
        "updated_at": lambda task: task["updated_at"],
        "title": lambda task: task["title"].casefold(),
        "priority": lambda task: PRIORITY_RANK[task["priority"].lower()],
    }[sort_by]
    return sorted(ordered, key=key, reverse=descending)


def reference_listing(tasks: Iterable[Task], params: Params) -> list[str]:
    single = dict(params)
    matched = reference_filter(tasks, params)
    ordered = reference_order(
        matched, single.get("sort_by", "created_at"), single.get("sort_direction", "desc")
    )
    return [task["id"] for task in ordered]


# ---------------------------------------------------------------- a dataset full of ties

# created at second, title, description, priority, due_date, tags, completed at second (or None)
DATASET: list[tuple[float, str, str | None, str, str | None, list[str], float | None]] = [
    (0, "alpha", "Buy 50% off milk", "High", "2026-03-01", ["Work"], None),
    (0, "Alpha", None, "Low", None, ["home", "errands"], 100),
    (0, "ALPHA", "500 grams of flour", "medium", "2026-03-01", [], None),
    (1, "beta", "a_b test", "High", "2026-02-15", ["work", "Urgent"], 100),
    (1, "Beta", "axb test", "Medium", None, ["urgent"], None),
    (2, "gamma", "back\\slash", "Low", "2026-03-01", ["HOME"], None),
    (2, "Gamma", "backXslash", "High", "2026-02-15", ["WORK", "home"], 101),
    (3, "delta", "mentions alpha", "Medium", "2026-04-30", ["errands"], 101),
    (3, "delta", None, "Medium", "2026-04-30", ["errands", "work"], None),
    (4, "epsilon", "MILK and honey", "Low", None, [], 102),
    (4, "Epsilon", "50 percent", "High", "2026-01-01", ["Urgent", "home", "work"], None),
    (5, "zeta", "100%_\\", "Low", "2026-02-15", ["misc"], None),
    (5, "Zeta", None, "Medium", "2026-03-01", ["Misc", "home"], 102),
    (6, "eta", "", "High", None, ["work"], 102),
    (7, "theta", "alpha beta", "low", "2025-12-31", ["home", "urgent"], None),
    (8, "iota", None, "High", "2026-04-30", [], None),
    (8, "Iota", "x", "Low", "2026-02-15", ["work", "errands", "home"], 103),
    (9, "kappa", "a%b", "Medium", None, ["errands"], None),
    (10, "lambda", None, "High", "2026-03-01", ["urgent", "work"], None),
    (10, "LAMBDA", "Milk", "Medium", "2026-03-01", ["home"], 103),
    (10, "mu", "50%", "Low", None, ["work"], None),
]


@pytest.fixture
def dataset(client: FlaskClient, clock: Clock) -> list[Task]:
    """The DATASET through the API, as GET returns each task afterwards."""
    ids: list[str] = []
    completions: list[tuple[float, str]] = []
    for second, title, description, priority, due, tags, done_at in DATASET:
        fields: dict[str, Any] = {"title": title, "priority": priority, "tags": tags}
        if description is not None:
            fields["description"] = description
        if due is not None:
            fields["due_date"] = due
        (task,) = make_tasks(client, clock, (second, fields))
        ids.append(task["id"])
        if done_at is not None:
            completions.append((done_at, task["id"]))
    for done_at, task_id in sorted(completions):
        clock.at(done_at)
        response = client.patch(
            f"/api/{USER}/tasks/{task_id}/complete", json={"completed": True}, headers=bearer(USER)
        )
        assert response.status_code == 200
        assert response.get_json()["updated_at"] == stamp(done_at)
    return [get_task(client, task_id) for task_id in ids]


# ---------------------------------------------------------------- envelope and defaults


def test_empty_listing(client: FlaskClient) -> None:
    assert ok_page(client) == {"data": [], "total": 0, "limit": 50, "offset": 0}


def test_envelope_defaults_and_items(client: FlaskClient, clock: Clock) -> None:
    first, second, third = make_tasks(
        client, clock,
        (1, {"title": "one", "tags": ["b", "A"], "due_date": "2026-02-01"}),
        (2, {"title": "two", "description": "d", "priority": "low"}),
        (3, {"title": "three"}),
    )
    body = ok_page(client)
    assert body["total"] == 3 and body["limit"] == 50 and body["offset"] == 0
    # Default order: created_at descending; items are the same representation as GET by id.
    assert body["data"] == [get_task(client, t["id"]) for t in (third, second, first)]
    assert body["data"][2]["tags"] == ["A", "b"]


def test_defaults_equal_explicit_defaults(client: FlaskClient, dataset: list[Task]) -> None:
    implicit = ok_page(client)
    explicit = ok_page(client, [
        ("status", "all"), ("priority", "all"), ("tag_mode", "any"), ("sort_by", "created_at"),
        ("sort_direction", "desc"), ("limit", "50"), ("offset", "0"),
    ])
    assert implicit == explicit
    assert [t["id"] for t in implicit["data"]] == reference_listing(dataset, [])


def test_default_limit_is_50_and_total_counts_every_match(client: FlaskClient) -> None:
    for number in range(55):
        new_task(client, USER, title=f"t{number}")
    body = ok_page(client)
    assert (len(body["data"]), body["total"], body["limit"], body["offset"]) == (50, 55, 50, 0)
    rest = ok_page(client, {"offset": 50})
    assert (len(rest["data"]), rest["total"], rest["limit"], rest["offset"]) == (5, 55, 50, 50)
    everything = ok_page(client, {"limit": 100})
    assert len(everything["data"]) == 55
    assert {t["id"] for t in body["data"] + rest["data"]} == {t["id"] for t in everything["data"]}


@pytest.mark.parametrize(
    ("limit", "offset", "page_size"),
    [(1, 0, 1), (3, 0, 3), (3, 2, 3), (7, 14, 7), (7, 18, 3), (100, 0, 21), (100, 20, 1),
     (5, 21, 0), (5, 22, 0), (1, 1000, 0)],
)
def test_limit_and_offset_are_echoed(
    client: FlaskClient, dataset: list[Task], limit: int, offset: int, page_size: int
) -> None:
    body = ok_page(client, {"limit": limit, "offset": offset})
    assert (body["total"], body["limit"], body["offset"]) == (len(dataset), limit, offset)
    expected = reference_listing(dataset, [])[offset:offset + limit]
    assert len(expected) == page_size
    assert [t["id"] for t in body["data"]] == expected


@pytest.mark.parametrize("params", [
    [("status", "pending")], [("tags", "work")], [("search", "alpha")], [("priority", "low")],
])
def test_offset_past_the_end_of_a_filtered_listing(
    client: FlaskClient, dataset: list[Task], params: Params
) -> None:
    matches = len(reference_filter(dataset, params))
    assert 0 < matches < len(dataset)
    for offset in (matches, matches + 1, 500):
        body = ok_page(client, [*params, ("offset", str(offset)), ("limit", "5")])
        assert body == {"data": [], "total": matches, "limit": 5, "offset": offset}


def test_total_counts_matches_beyond_the_page(client: FlaskClient, dataset: list[Task]) -> None:
    params = [("status", "pending"), ("limit", "2"), ("offset", "1")]
    body = ok_page(client, params)
    assert body["total"] == len(reference_filter(dataset, params)) > 3
    assert len(body["data"]) == 2


def test_listing_shows_only_the_users_own_tasks(client: FlaskClient) -> None:
    mine = new_task(client, USER, title="mine", tags=["shared"])
    new_task(client, OTHER, title="theirs", tags=["shared"])
    new_task(client, OTHER, title="mine too?", tags=["shared"])
    for params in ([], [("tags", "shared")], [("search", "mine")]):
        body = ok_page(client, params)
        assert [t["id"] for t in body["data"]] == [mine["id"]] and body["total"] == 1
    other = ok_page(client, [("search", "mine")], user=OTHER)
    assert titles(other["data"]) == ["mine too?"] and other["total"] == 1


# ---------------------------------------------------------------- search


SEARCH_SPECS = [
    {"title": "Sale 50% off"},
    {"title": "500 grams"},
    {"title": "a_b"},
    {"title": "axb"},
    {"title": "path\\to"},
    {"title": "pathXto"},
    {"title": "Buy MILK"},
    {"title": "chocolate", "description": "Milk chocolate, 100%"},
    {"title": "plain", "description": "nothing_special"},
    {"title": "empty description", "description": ""},
]


@pytest.mark.parametrize(("search", "expected"), [
    ("50%", {"Sale 50% off"}),
    ("%", {"Sale 50% off", "chocolate"}),
    ("0%", {"Sale 50% off", "chocolate"}),
    ("%%", set()),
    ("a_b", {"a_b"}),
    ("_", {"a_b", "plain"}),
    ("\\", {"path\\to"}),
    ("h\\t", {"path\\to"}),
    ("\\\\", set()),
    ("milk", {"Buy MILK", "chocolate"}),
    ("MiLk", {"Buy MILK", "chocolate"}),
    ("BUY m", {"Buy MILK"}),
    ("chocolate", {"chocolate"}),  # title and description both match: listed once
    ("special", {"plain"}),  # description only
    ("500", {"500 grams"}),
    ("no such text", set()),
    ("", {spec["title"] for spec in SEARCH_SPECS}),  # an empty box filters nothing
])
def test_search_is_a_literal_case_insensitive_substring(
    client: FlaskClient, clock: Clock, search: str, expected: set[str]
) -> None:
    created = make_tasks(client, clock, *enumerate(SEARCH_SPECS))
    body = ok_page(client, {"search": search})
    assert set(titles(body["data"])) == expected
    assert len(body["data"]) == body["total"] == len(expected)
    params = [("search", search)]
    assert [t["id"] for t in body["data"]] == reference_listing(created, params)


@pytest.mark.parametrize(("search", "kind"), [
    ("milk", "indexed"), ("a1b2c", "indexed"), ("BUY m", "indexed"), ("ßßß", "indexed"),
    ("50%", "scanned"), ("%" * 200, "scanned"), ("_" * 200, "scanned"), ("a b c", "scanned"),
    ("ab", "scanned"), ("a_b_c", "scanned"), ("h\\t", "scanned"),
])
def test_searches_the_trigram_indexes_cannot_narrow_are_scanned(search: str, kind: str) -> None:
    assert listing_module.search_kind(search) == kind


UNICODE_SPECS = [
    {"title": "Straße fegen", "description": "STRASSE"},
    {"title": "ÉTÉ", "description": "été"},
    {"title": "ΣΟΦΊΑ", "description": "σοφία"},
    {"title": "İstanbul", "description": "istanbul"},
    {"title": "%%%", "description": "___"},
]


@pytest.mark.parametrize("search", [
    "ß", "SS", "é", "É", "Σ", "σ", "ς", "i̇", "İ", "%%", "__", "50%", "h\\t", "_", "milk",
    "STRASSE", "été", "ΣΟΦ", "Stra", "ß" * 200, "%" * 200,
])
def test_the_scanned_fast_path_answers_what_ilike_answers(
    client: FlaskClient, clock: Clock, monkeypatch: pytest.MonkeyPatch, search: str
) -> None:
    """The same search, run once as ILIKE (the indexed form) and once as
    `lower(column) LIKE lower(pattern)` (the scanned fast path), gives the same page."""
    make_tasks(client, clock, *enumerate(SEARCH_SPECS + UNICODE_SPECS))
    pages = []
    for kind in ("indexed", "scanned"):
        monkeypatch.setattr(listing_module, "search_kind", lambda text, kind=kind: kind)
        pages.append(ok_page(client, {"search": search}))
    assert pages[0] == pages[1]


def test_search_length_limit(client: FlaskClient) -> None:
    task = new_task(client, USER, title="x" * 200)
    body = ok_page(client, {"search": "x" * 200})
    assert [t["id"] for t in body["data"]] == [task["id"]]
    assert_bad_query(listing(client, {"search": "x" * 201}), "search")


# ---------------------------------------------------------------- filters alone


def test_filters_on_purpose_built_tasks(client: FlaskClient, clock: Clock) -> None:
    """Hand-checked expectations, independent of the reference implementation."""
    make_tasks(
        client, clock,
        (1, {"title": "a", "priority": "High", "tags": ["Work", "home"], "due_date": "2026-03-01"}),
        (2, {"title": "b", "priority": "Low", "tags": ["work"], "due_date": "2026-03-02"}),
        (3, {"title": "c", "priority": "Medium", "tags": ["HOME"]}),
        (4, {"title": "d", "priority": "low", "due_date": "2026-02-28"}),
    )
    clock.at(5)
    b_id = ok_page(client, {"search": "b"})["data"][0]["id"]
    client.patch(f"/api/{USER}/tasks/{b_id}/complete", headers=bearer(USER))

    def shown(*params: tuple[str, str]) -> list[str]:
        by_title = [*params, ("sort_by", "title"), ("sort_direction", "asc")]
        return titles(ok_page(client, by_title)["data"])

    assert shown() == ["a", "b", "c", "d"]
    assert shown(("status", "pending")) == ["a", "c", "d"]
    assert shown(("status", "completed")) == ["b"]
    assert shown(("priority", "LOW")) == ["b", "d"]
    assert shown(("priority", "high")) == ["a"]
    assert shown(("tags", "WORK")) == ["a", "b"]
    assert shown(("tags[]", "home")) == ["a", "c"]
    assert shown(("tags", "work"), ("tags[]", "home")) == ["a", "b", "c"]
    assert shown(("tags", "work"), ("tags", "Home"), ("tag_mode", "all")) == ["a"]
    assert shown(("tags", " work "), ("tag_mode", "all")) == ["a", "b"]
    assert shown(("tags", "nowhere")) == []
    assert shown(("due_from", "2026-03-01")) == ["a", "b"]
    assert shown(("due_to", "2026-03-01")) == ["a", "d"]
    assert shown(("due_from", "2026-03-01"), ("due_to", "2026-03-01")) == ["a"]
    assert shown(("due_from", "2026-03-03")) == []
    assert shown(("due_from", "2026-03-02"), ("due_to", "2026-02-28")) == []


SINGLE_FILTERS: list[tuple[Params, bool]] = [
    # (params, whether the filter must narrow the dataset)
    ([("search", "alpha")], True),
    ([("search", "ALPHA")], True),
    ([("search", "50%")], True),
    ([("search", "a_b")], True),
    ([("search", "\\")], True),
    ([("search", "milk")], True),
    ([("status", "all")], False),
    ([("status", "pending")], True),
    ([("status", "completed")], True),
    ([("priority", "all")], False),
    ([("priority", "ALL")], False),
    ([("priority", "High")], True),
    ([("priority", "medium")], True),
    ([("priority", "LOW")], True),
    ([("priority", "hIgH")], True),
    ([("tags", "work")], True),
    ([("tags", "WORK")], True),
    ([("tags[]", "Home")], True),
    ([("tags", "work"), ("tags", "home")], True),
    ([("tags", "work"), ("tags[]", "home")], True),
    ([("tags[]", "work"), ("tags[]", "urgent"), ("tag_mode", "any")], True),
    ([("tags", "work"), ("tags", "home"), ("tag_mode", "all")], True),
    ([("tags[]", "URGENT"), ("tags", "work"), ("tag_mode", "all")], True),
    ([("tags", "work"), ("tags", "home"), ("tags", "errands"), ("tag_mode", "all")], True),
    ([("tags", "work"), ("tags", "Work"), ("tag_mode", "all")], True),  # duplicates are one tag
    ([("tags", "misc"), ("tag_mode", "all")], True),
    ([("tags", "unknown")], True),
    ([("tags", "work"), ("tags", "unknown"), ("tag_mode", "all")], True),
    ([("tag_mode", "all")], False),  # a mode without tags filters nothing
    ([("due_from", "2026-03-01")], True),
    ([("due_to", "2026-02-15")], True),
    ([("due_from", "2026-02-15"), ("due_to", "2026-03-01")], True),
    ([("due_from", "2026-03-01"), ("due_to", "2026-03-01")], True),
    ([("due_from", "2025-01-01")], True),  # excludes only the tasks without a due date
    ([("due_from", "2026-05-01"), ("due_to", "2026-01-01")], True),
]


@pytest.mark.parametrize(("params", "narrows"), SINGLE_FILTERS)
def test_each_filter_alone(
    client: FlaskClient, dataset: list[Task], params: Params, narrows: bool
) -> None:
    expected = reference_listing(dataset, params)
    assert (len(expected) < len(dataset)) is narrows
    ids, total = all_ids(client, params)
    assert ids == expected
    assert total == len(expected)


SEARCHES = [None, "alpha", "50%", "a_b", "\\", "MILK"]
TAG_FILTERS: list[Params] = [
    [],
    [("tags", "work")],
    [("tags[]", "HOME")],
    [("tags", "work"), ("tags[]", "home")],
    [("tags", "work"), ("tags", "home"), ("tag_mode", "all")],
    [("tags[]", "Urgent"), ("tags", "WORK"), ("tag_mode", "all")],
    [("tags", "errands"), ("tag_mode", "any")],
]
DUE_FILTERS: list[Params] = [
    [],
    [("due_from", "2026-03-01")],
    [("due_to", "2026-02-15")],
    [("due_from", "2026-02-15"), ("due_to", "2026-03-01")],
    [("due_from", "2026-03-01"), ("due_to", "2026-03-01")],
]


@pytest.mark.parametrize("status", ["all", "pending", "completed"])
@pytest.mark.parametrize("priority", ["all", "High", "medium", "LOW"])
def test_filters_combined(
    client: FlaskClient, dataset: list[Task], status: str, priority: str
) -> None:
    """status x priority (parametrized) x search x tags x due dates (looped): 840 listings."""
    sizes = set()
    for search, tags, due in itertools.product(SEARCHES, TAG_FILTERS, DUE_FILTERS):
        params: list[tuple[str, str]] = [("status", status), ("priority", priority), *tags, *due]
        if search is not None:
            params.append(("search", search))
        expected = reference_listing(dataset, params)
        ids, total = all_ids(client, params)
        assert (ids, total) == (expected, len(expected)), params
        sizes.add(len(expected))
    assert len(sizes) > 2  # the matrix is not all-empty (or all-full)


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize(("sort_by", "direction"), SORTS)
def test_order_matches_the_reference(
    client: FlaskClient, dataset: list[Task], sort_by: str, direction: str
) -> None:
    for filters in ([], [("status", "pending")], [("tags", "work")], [("search", "a")]):
        params = [*filters, ("sort_by", sort_by), ("sort_direction", direction)]
        ids, total = all_ids(client, params)
        expected = reference_listing(dataset, params)
        assert ids == expected, params
        assert total == len(expected)


def test_the_dataset_has_the_ties_it_claims(dataset: list[Task]) -> None:
    """Guards the ordering tests: without ties they would not test the tie-breaks."""

    def has_ties(values: list[Any]) -> bool:
        return len(set(values)) < len(values)

    assert has_ties([t["created_at"] for t in dataset])
    assert has_ties([t["updated_at"] for t in dataset])
    assert has_ties([t["title"].casefold() for t in dataset])
    assert has_ties([(t["title"], t["created_at"]) for t in dataset])  # only the id decides
    assert has_ties([t["due_date"] for t in dataset if t["due_date"]])
    assert sum(t["due_date"] is None for t in dataset) > 1
    assert has_ties([t["priority"] for t in dataset])


@pytest.mark.parametrize(("direction", "expected"), [
    ("asc", ["apple", "Apple", "banana", "Cherry"]),
    ("desc", ["Cherry", "banana", "apple", "Apple"]),
])
def test_title_order_ignores_case(
    client: FlaskClient, clock: Clock, direction: str, expected: list[str]
) -> None:
    make_tasks(client, clock, (1, {"title": "banana"}), (2, {"title": "Apple"}),
               (3, {"title": "Cherry"}), (4, {"title": "apple"}))
    body = ok_page(client, {"sort_by": "title", "sort_direction": direction})
    # Equal titles (apple/Apple) break by created_at descending in both directions.
    assert titles(body["data"]) == expected


@pytest.mark.parametrize(("direction", "expected"), [
    ("asc", ["c", "e", "a", "d", "b"]),
    ("desc", ["e", "a", "c", "d", "b"]),
])
def test_due_date_order_puts_undated_tasks_last(
    client: FlaskClient, clock: Clock, direction: str, expected: list[str]
) -> None:
    make_tasks(
        client, clock,
        (1, {"title": "a", "due_date": "2026-01-02"}), (2, {"title": "b"}),
        (3, {"title": "c", "due_date": "2026-01-01"}), (4, {"title": "d"}),
        (5, {"title": "e", "due_date": "2026-01-02"}),
    )
    body = ok_page(client, {"sort_by": "due_date", "sort_direction": direction})
    assert titles(body["data"]) == expected


@pytest.mark.parametrize(("direction", "expected"), [
    ("asc", ["high-new", "high-old", "medium", "low"]),
    ("desc", ["low", "medium", "high-new", "high-old"]),
])
def test_priority_order_is_high_medium_low(
    client: FlaskClient, clock: Clock, direction: str, expected: list[str]
) -> None:
    make_tasks(
        client, clock,
        (1, {"title": "low", "priority": "Low"}),
        (2, {"title": "high-old", "priority": "High"}),
        (3, {"title": "medium", "priority": "Medium"}),
        (4, {"title": "high-new", "priority": "high"}),
    )
    body = ok_page(client, {"sort_by": "priority", "sort_direction": direction})
    assert titles(body["data"]) == expected


@pytest.mark.parametrize(("direction", "expected"), [
    ("asc", ["b", "c", "a"]),
    ("desc", ["a", "c", "b"]),
])
def test_updated_at_order(
    client: FlaskClient, clock: Clock, direction: str, expected: list[str]
) -> None:
    a, _, _ = make_tasks(
        client, clock, (1, {"title": "a"}), (2, {"title": "b"}), (3, {"title": "c"})
    )
    clock.at(10)
    response = client.patch(
        f"/api/{USER}/tasks/{a['id']}", json={"title": "a"}, headers=bearer(USER)
    )
    assert response.get_json()["updated_at"] == stamp(1)  # no change, no new updated_at
    response = client.patch(f"/api/{USER}/tasks/{a['id']}", json={"priority": "Low"},
                            headers=bearer(USER))
    assert response.get_json()["updated_at"] == stamp(10)
    body = ok_page(client, {"sort_by": "updated_at", "sort_direction": direction})
    assert titles(body["data"]) == expected


@pytest.mark.parametrize(("sort_by", "direction"), SORTS)
def test_full_ties_break_by_id(
    client: FlaskClient, clock: Clock, sort_by: str, direction: str
) -> None:
    """Tasks equal in every sort key (same second, title, priority, date) come in id order."""
    same = {"title": "Same", "priority": "Low", "due_date": "2026-06-01"}
    tasks = make_tasks(client, clock, *[(7, same)] * 6)
    body = ok_page(client, {"sort_by": sort_by, "sort_direction": direction})
    assert [t["id"] for t in body["data"]] == sorted(t["id"] for t in tasks)


def test_default_order_is_created_at_descending(client: FlaskClient, clock: Clock) -> None:
    tasks = make_tasks(client, clock, (3, {"title": "x"}), (1, {"title": "y"}), (2, {"title": "z"}))
    body = ok_page(client)
    assert titles(body["data"]) == ["x", "z", "y"]
    assert [t["id"] for t in body["data"]] == reference_listing(tasks, [])


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize(("sort_by", "direction"), SORTS)
def test_pages_cover_the_listing_exactly_once(
    client: FlaskClient, dataset: list[Task], sort_by: str, direction: str
) -> None:
    for filters, limit in itertools.product(([], [("status", "pending")]), (1, 3, 7)):
        params = [*filters, ("sort_by", sort_by), ("sort_direction", direction)]
        expected = reference_listing(dataset, params)
        walked: list[str] = []
        offset = 0
        while True:
            body = ok_page(client, [*params, ("limit", str(limit)), ("offset", str(offset))])
            assert (body["total"], body["limit"], body["offset"]) == (len(expected), limit, offset)
            assert len(body["data"]) == max(0, min(limit, len(expected) - offset))
            if not body["data"]:
                break
            walked += [t["id"] for t in body["data"]]
            offset += limit
        assert walked == expected, (params, limit)
        assert len(set(walked)) == len(walked)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(("query", "parameter"), [
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=-1", "limit"),
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    # Python's int() reads these as 50, 5 or 5; the contract says out-of-set values are 400.
    ("limit=5_0", "limit"),
    ("limit=%2B5", "limit"),
    ("limit=%205%20", "limit"),
    ("limit=5%0A", "limit"),
    ("limit=%D9%A5", "limit"),  # Arabic-Indic five
    ("limit=%EF%BC%95", "limit"),  # fullwidth five
    ("limit=%F0%9D%9F%93", "limit"),  # mathematical bold five
    ("offset=1_0", "offset"),
    ("offset=%2B0", "offset"),
    ("offset=%D9%A0", "offset"),
    ("offset=-1", "offset"),
    ("offset=abc", "offset"),
    ("status=done", "status"),
    ("status=", "status"),
    ("priority=urgent", "priority"),
    ("sort_by=foo", "sort_by"),
    ("sort_by=id", "sort_by"),
    ("sort_direction=up", "sort_direction"),
    ("tag_mode=some", "tag_mode"),
    ("due_from=2026-13-01", "due_from"),
    ("due_to=2026-02-30", "due_to"),
    ("due_from=20260101", "due_from"),
    ("due_to=tomorrow", "due_to"),
    ("due_from=2026-12-01%0A", "due_from"),
    ("due_from=%D9%A2%D9%A0%D9%A2%D9%A6-12-01", "due_from"),  # Arabic-Indic digits
    (f"search={'s' * 201}", "search"),
    ("page=2", "page"),
    ("sort=title", "sort"),
    ("Limit=5", "Limit"),
    # A single-valued parameter given twice would otherwise be half ignored.
    ("limit=5&limit=500", "limit"),
    ("status=pending&status=completed", "status"),
    ("sort_by=title&sort_by=title", "sort_by"),
    ("search=a&search=b", "search"),
    ("tag_mode=all&tag_mode=any", "tag_mode"),
])
def test_invalid_arguments_are_400_naming_the_parameter(
    client: FlaskClient, query: str, parameter: str
) -> None:
    new_task(client, USER)
    assert_bad_query(listing(client, query), parameter)


def test_every_bad_parameter_is_named(client: FlaskClient) -> None:
    response = listing(client, "limit=0&offset=-1&status=done&page=2")
    assert_bad_query(response, "limit")
    assert set(response.get_json()["errors"]["query"]) == {"limit", "offset", "status", "page"}


@pytest.mark.parametrize(("query", "parameter"), [
    ("tags=", "tags"),
    ("tags=%20%20", "tags"),
    (f"tags={'t' * 51}", "tags"),
    (f"tags[]={'t' * 51}", "tags[]"),
    ("tags=ok&tags[]=", "tags[]"),
])
def test_invalid_tag_filters_are_400(client: FlaskClient, query: str, parameter: str) -> None:
    """An empty or over-long tag name in the filter is a 400 naming the parameter (list-item
    errors are keyed by index; the problem body must still serialise)."""
    response = listing(client, query)
    assert_bad_query(response, parameter)
    assert list(response.get_json()["errors"]["query"]) == [parameter]


@pytest.mark.parametrize("query", [
    "limit=1", "limit=100", "limit=007", "offset=0", "offset=1000", "priority=hIgH", "priority=ALL",
    "sort_direction=asc", f"search={'s' * 200}", f"tags={'t' * 50}", "due_from=2024-02-29",
])
def test_boundary_values_are_accepted(client: FlaskClient, query: str) -> None:
    response = listing(client, query)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == []
