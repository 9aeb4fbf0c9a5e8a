"""Query strings are parsed once per distinct string (`todo.api.smorest.StrictParser.parse`): the
cached answer must be the one a fresh parse gives, and a refused query is never cached."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from todo.api.smorest import Blueprint
from todo.tags.schemas import TagQueryArgsSchema
from todo.tasks.schemas import TaskQueryArgsSchema

QUERIES = [
    "",
    "limit=5&offset=10",
    "search=milk&priority=high&sort_by=due_date&sort_direction=asc",
    "tags=a&tags=B&tags[]=c&tag_mode=all&status=pending&due_from=2026-01-01&due_to=2026-12-31",
]


class UncachedTaskQuery(TaskQueryArgsSchema):
    PURE_QUERY = False


def parse(app: Flask, schema: Any, query: str) -> Any:
    with app.test_request_context(f"/?{query}"):
        return Blueprint.ARGUMENTS_PARSER.parse(schema, location="query")


@pytest.mark.parametrize("query", QUERIES)
def test_a_cached_parse_equals_a_fresh_one(app: Flask, query: str) -> None:
    cached_schema = TaskQueryArgsSchema()
    first = parse(app, cached_schema, query)
    assert parse(app, cached_schema, query) is first  # served from the cache
    assert first == parse(app, UncachedTaskQuery(), query)


def test_cached_values_are_immutable(app: Flask) -> None:
    args = parse(app, TaskQueryArgsSchema(), "tags=a&tags=b")
    assert args.tags == ("a", "b")
    with pytest.raises(AttributeError):
        args.limit = 7
    tag_args = parse(app, TagQueryArgsSchema(), "q=wo&limit=3")
    with pytest.raises(AttributeError):
        tag_args.q = "x"


def test_a_refused_query_is_refused_every_time(client: Any, auth: Any) -> None:
    for _ in range(2):
        response = client.get("/api/user-a/tasks?limit=0", headers=auth("user-a"))
        assert response.status_code == 400
        assert "limit" in response.get_json()["errors"]["query"]
