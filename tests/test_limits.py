"""Resource limits: per-user caps, body nesting and array lengths. Nothing grows without bound."""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, make_config, serve
from todo import create_app
from todo.extensions import db


@pytest.fixture
def app_config(database_url):
    return make_config(database_url, MAX_TASKS_PER_USER="3", MAX_TAGS_PER_USER="4")


def problem(response, status):
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_task_cap_per_user_is_409_and_creates_nothing(client):
    for i in range(3):
        assert client.post("/api/capped/tasks", json={"title": f"t{i}"}, headers=bearer("capped")).status_code == 201
    body = problem(client.post("/api/capped/tasks", json={"title": "one too many"}, headers=bearer("capped")), 409)
    assert "at most 3 tasks" in body["detail"]
    assert client.get("/api/capped/tasks", headers=bearer("capped")).get_json()["total"] == 3
    # Other users have their own allowance; deleting frees a slot.
    assert client.post("/api/other/tasks", json={"title": "x"}, headers=bearer("other")).status_code == 201
    first = client.get("/api/capped/tasks", headers=bearer("capped")).get_json()["data"][0]
    assert client.delete(f"/api/capped/tasks/{first['id']}", headers=bearer("capped")).status_code == 204
    assert client.post("/api/capped/tasks", json={"title": "fits again"}, headers=bearer("capped")).status_code == 201


def test_tag_cap_per_user_is_409_and_changes_nothing(client):
    created = client.post("/api/capped/tasks", json={"title": "t", "tags": ["a", "b", "c"]}, headers=bearer("capped"))
    assert created.status_code == 201
    task_id = created.get_json()["id"]
    body = problem(client.post("/api/capped/tasks", json={"title": "u", "tags": ["d", "e"]}, headers=bearer("capped")), 409)
    assert "at most 4 distinct tags" in body["detail"]
    problem(client.patch(f"/api/capped/tasks/{task_id}", json={"title": "changed", "tags": ["a", "w", "x", "y", "z"]},
                         headers=bearer("capped")), 409)
    task = client.get(f"/api/capped/tasks/{task_id}", headers=bearer("capped")).get_json()
    assert (task["title"], task["tags"]) == ("t", ["a", "b", "c"])
    assert client.get("/api/capped/tasks", headers=bearer("capped")).get_json()["total"] == 1
    # Existing tags never count twice, and replacing frees the ones dropped.
    assert client.post("/api/capped/tasks", json={"title": "v", "tags": ["A", "d"]}, headers=bearer("capped")).status_code == 201
    assert client.patch(f"/api/capped/tasks/{task_id}", json={"tags": ["a"]}, headers=bearer("capped")).status_code == 200
    assert client.post("/api/capped/tasks", json={"title": "w", "tags": ["e", "f"]}, headers=bearer("capped")).status_code == 201


def test_tags_a_write_removes_do_not_count_against_the_cap(client):
    """At 4 of 4 tags, replacing a task's 3 tags with 3 new ones leaves 4 in use: allowed.
    (The cap once counted the tags the same write was dropping: 4 + 3 > 4, a 409.)"""
    user, headers = "capped", bearer("capped")
    replaced = client.post(f"/api/{user}/tasks", json={"title": "t", "tags": ["a", "b", "c"]}, headers=headers)
    assert client.post(f"/api/{user}/tasks", json={"title": "u", "tags": ["d", "a"]}, headers=headers).status_code == 201
    url = f"/api/{user}/tasks/{replaced.get_json()['id']}"

    response = client.patch(url, json={"tags": ["x", "y", "a"]}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["tags"] == ["a", "x", "y"]
    tags = client.get(f"/api/{user}/tags", headers=headers).get_json()
    assert sorted(tag["name"] for tag in tags) == ["a", "d", "x", "y"]
    # Dropping `a` frees nothing while another task still uses it: d, a (u) + x, y, z is 5.
    problem(client.patch(url, json={"tags": ["x", "y", "z"]}, headers=headers), 409)
    problem(client.post(f"/api/{user}/tasks", json={"title": "v", "tags": ["z"]}, headers=headers), 409)
    assert client.patch(url, json={"tags": ["z"]}, headers=headers).status_code == 200  # d, a, z
    assert client.post(f"/api/{user}/tasks", json={"title": "w", "tags": ["q"]}, headers=headers).status_code == 201


@pytest.mark.parametrize("depth", [50, 5000])
def test_deeply_nested_json_is_400(client, depth):
    body = '{"title": "x", "tags": ' + "[" * depth + "]" * depth + "}"
    response = client.post("/api/u/tasks", data=body, headers={**bearer("u"), "Content-Type": "application/json"})
    problem(response, 400)


def test_long_arrays_are_bounded(client):
    tags = [f"tag{i}" for i in range(101)]
    body = problem(client.post("/api/u/tasks", json={"title": "x", "tags": tags}, headers=bearer("u")), 400)
    assert "tags" in body["errors"]["json"]
    many_filters = "&".join(f"tags=t{i}" for i in range(51))
    body = problem(client.get(f"/api/u/tasks?{many_filters}", headers=bearer("u")), 400)
    assert "tags" in body["errors"]["query"]


def test_search_and_limit_are_bounded(client):
    problem(client.get("/api/u/tasks?search=" + "x" * 201, headers=bearer("u")), 400)
    problem(client.get("/api/u/tasks?limit=101", headers=bearer("u")), 400)
    problem(client.get("/api/u/tags?q=" + "x" * 51, headers=bearer("u")), 400)


def test_body_limit_applies_to_chunked_bodies_too(app):
    """No Content-Length to check up front: the limit still holds while reading."""
    payload = json.dumps({"title": "x", "description": "y" * 100_000}).encode()
    with serve(app) as base:
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", "/api/u/tasks")
        for name, value in {**bearer("u"), "Content-Type": "application/json",
                            "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for start in range(0, len(payload), 8192):
            chunk = payload[start:start + 8192]
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        assert response.status == 413, response.read()
        assert response.getheader("Content-Type") == "application/problem+json"
        connection.close()
    assert app.test_client().get("/api/u/tasks", headers=bearer("u")).get_json()["total"] == 0


def test_default_caps_are_documented_values(database_url):
    config = create_app(make_config(database_url)).config
    assert (config["MAX_TASKS_PER_USER"], config["MAX_TAGS_PER_USER"]) == (10_000, 500)
    assert config["MAX_CONTENT_LENGTH"] == 64 * 1024


@pytest.mark.parametrize("backend", ["postgresql", "pgbouncer"])
def test_a_search_is_cancelled_at_its_own_shorter_time_limit(app_config, backend):
    """The costliest search: a pattern that matches 199 characters of every 1,000-character
    description before failing (LIKE's backtracking). At 10,000 such tasks it ran 2 s; here
    3,000 tasks and a 50 ms limit for searches, while other reads keep the 5 s one."""
    app = create_app({**app_config, "DB_SEARCH_TIMEOUT_MS": 50})
    user, now = "searcher", "2026-01-01T00:00:00Z"
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (id, created_at) VALUES (:u, :t)"), {"u": user, "t": now})
        connection.execute(
            sa.text("INSERT INTO tasks (id, user_id, title, description, completed, priority,"
                    " created_at, updated_at, tag_names) VALUES (:id, :u, :title, :d, false,"
                    " 'Medium', :t, :t, '[]')"),
            [{"id": uuid.uuid4(), "u": user, "title": "." * 200, "d": "." * 1000, "t": now}
             for _ in range(3000)],
        )
    client = app.test_client()
    started = time.perf_counter()
    response = client.get(f"/api/{user}/tasks", query_string={"search": "." * 199 + ","},
                          headers=bearer(user))
    elapsed = time.perf_counter() - started
    body = problem(response, 503)
    assert response.headers["Retry-After"] and "too slow" in body["detail"]
    assert elapsed < 2, elapsed
    assert client.get(f"/api/{user}/tasks", headers=bearer(user)).get_json()["total"] == 3000
    with app.app_context():
        db.engine.dispose()


def test_default_search_time_limit_is_a_fifth_of_the_statement_limit(database_url):
    config = create_app(make_config(database_url)).config
    assert (config["DB_SEARCH_TIMEOUT_MS"], config["DB_STATEMENT_TIMEOUT_MS"]) == (1000, 5000)


def test_the_counts_follow_every_write(database_url):
    """The task limit reads `users.task_count` and /tags reads `tags.usage_count` (both kept
    by triggers, which also delete a tag with its last link): after any mix of writes they
    equal what they count, and no tag is left unused."""
    app = create_app(make_config(database_url))
    client = app.test_client()
    rng = random.Random(7)
    headers = bearer("counted-user")
    ids: list[str] = []
    for _ in range(80):
        tags = rng.sample(["a", "B", "c", "d"], rng.randint(0, 3))
        roll = rng.random()
        if ids and roll < 0.3:
            task_id = ids.pop(rng.randrange(len(ids)))
            assert client.delete(f"/api/counted-user/tasks/{task_id}", headers=headers).status_code == 204
        elif ids and roll < 0.6:
            task_id = rng.choice(ids)
            response = client.patch(f"/api/counted-user/tasks/{task_id}", headers=headers,
                                    json={"tags": tags})
            assert response.status_code == 200, response.get_json()
        else:
            response = client.post("/api/counted-user/tasks", headers=headers,
                                   json={"title": "t", "tags": tags})
            assert response.status_code == 201, response.get_json()
            ids.append(response.get_json()["id"])
    with app.app_context(), db.engine.connect() as connection:
        stored, counted = connection.execute(sa.text(
            "SELECT task_count, (SELECT count(*) FROM tasks WHERE user_id = users.id)"
            " FROM users WHERE id = 'counted-user'")).one()
        usage = connection.execute(sa.text(
            "SELECT name, usage_count, (SELECT count(*) FROM task_tags WHERE tag_id = tags.id)"
            " FROM tags WHERE user_id = 'counted-user'")).all()
        db.engine.dispose()
    assert stored == counted == len(ids)
    assert usage and all(kept == links > 0 for _, kept, links in usage), usage
