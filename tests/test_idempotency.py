"""`Idempotency-Key` (API.md, Idempotent retries), through HTTP on every backend: replays,
mismatches, keys in flight, failures that run again, expiry, abandoned claims, bad keys;
50 concurrent retries against gunicorn on PostgreSQL; what a key costs on the wire."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import assert_problem, bearer, new_task
from tests.gunicorn_server import Gunicorn
from tests.test_round_trips import proxied_client, round_trips
from todo.data.models import IdempotencyKey, utc_now
from todo.extensions import db
from todo.pipeline import idempotency
from todo.pipeline.idempotency import Fingerprint, differences, fingerprint
from todo.tasks import writes

USER = "user-a"
KEY_HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def new_key() -> str:
    return str(uuid.uuid4())


def with_key(key: str, user: str = USER, **headers: str) -> dict[str, str]:
    return {**bearer(user), KEY_HEADER: key, **headers}


def tasks_of(client: FlaskClient, user: str = USER) -> list[dict[str, Any]]:
    page = client.get(f"/api/{user}/tasks?limit=100", headers=bearer(user)).get_json()
    tasks: list[dict[str, Any]] = page["data"]
    return tasks


def kept_rows(app: Flask) -> list[dict[str, Any]]:
    with app.app_context(), db.engine.connect() as connection:
        rows = connection.execute(sa.select(IdempotencyKey.__table__)).mappings().all()
    return [dict(row) for row in rows]


def age_keys(app: Flask, by: timedelta, **where: Any) -> None:
    """Move keys' claims back in time (the model's column type writes each backend's format)."""
    table = IdempotencyKey.__table__
    with app.app_context(), db.engine.begin() as connection:
        for row in connection.execute(sa.select(table.c.user_id, table.c.key, table.c.created_at)
                                      .filter_by(**where)).all():
            connection.execute(
                sa.update(table)
                .where(table.c.user_id == row.user_id, table.c.key == row.key)
                .values(created_at=row.created_at - by)
            )


def assert_replay_of(replay: Any, first: Any) -> None:
    assert REPLAYED not in first.headers
    assert replay.headers[REPLAYED] == "true"
    assert replay.status_code == first.status_code
    assert replay.get_data() == first.get_data()
    for name in ("Content-Type", "ETag", "Location"):
        assert replay.headers.get(name) == first.headers.get(name), name


# ---------------------------------------------------------------- the fingerprint


def test_fingerprint_is_method_target_and_the_bodys_sha256() -> None:
    given = fingerprint("POST", "/api/u/tasks", b"", b'{"title": "x"}')
    assert given == Fingerprint("POST", "/api/u/tasks", hashlib.sha256(b'{"title": "x"}').digest())
    assert fingerprint("DELETE", "/api/u", b"confirm=u", b"").target == "/api/u?confirm=u"
    assert fingerprint("POST", "/p", b"", b"").body_sha256 == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert differences(given, given) == []
    # The body as sent, byte for byte: the same JSON spelt differently is another body.
    assert differences(given, fingerprint("POST", "/api/u/tasks", b"", b'{"title":"x"}')) == ["body"]
    assert differences(given, fingerprint("PUT", "/api/u/tasks", b"", b'{"title": "x"}')) == ["method"]
    assert differences(given, fingerprint("POST", "/api/v/tasks", b"", b'{"title": "x"}')) == ["path"]
    assert differences(given, fingerprint("POST", "/api/u/tasks", b"a=1", b'{"title": "x"}')) == ["path"]
    assert differences(given, fingerprint("PATCH", "/x", b"", b"")) == ["method", "path", "body"]
    # Percent-encoded, so a NUL can be stored, and `%` too, so two targets never become one.
    assert fingerprint("PATCH", "/t/\x00é", b"q=\x00%", b"").target == "/t/%00%C3%A9?q=%00%25"
    assert fingerprint("PATCH", "/t/%00", b"", b"").target == "/t/%2500"


# ---------------------------------------------------------------- replays


def test_a_retried_create_gets_the_kept_response_and_creates_nothing(client, app):
    key = new_key()
    first = client.post(f"/api/{USER}/tasks", json={"title": "once"}, headers=with_key(key))
    assert first.status_code == 201
    replay = client.post(f"/api/{USER}/tasks", json={"title": "once"}, headers=with_key(key))
    assert_replay_of(replay, first)
    assert [task["title"] for task in tasks_of(client)] == ["once"]
    # Still the kept response after the task is gone: nothing runs again.
    task_path = first.headers["Location"]
    assert client.delete(task_path, headers=bearer()).status_code == 204
    assert_replay_of(
        client.post(f"/api/{USER}/tasks", json={"title": "once"}, headers=with_key(key)), first
    )
    assert tasks_of(client) == []
    [row] = kept_rows(app)
    assert (row["user_id"], row["key"], row["state"], row["status"]) == (USER, key, "done", 201)
    assert set(row["headers"]) == {"Content-Type", "ETag", "Location"}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_retried_update_is_replayed_and_does_not_run_again(client, create_task, method):
    task = create_task(title="start")
    path = f"/api/{USER}/tasks/{task['id']}"
    key = new_key()
    first = client.open(path, method=method, json={"title": "edited"}, headers=with_key(key))
    assert first.status_code == 200 and first.get_json()["title"] == "edited"
    # Someone else changes the task; the retry must not overwrite that.
    later = client.patch(path, json={"title": "later"}, headers=bearer())
    assert later.status_code == 200
    replay = client.open(path, method=method, json={"title": "edited"}, headers=with_key(key))
    assert_replay_of(replay, first)
    current = client.get(path, headers=bearer())
    assert current.get_json()["title"] == "later"
    assert current.headers["ETag"] == later.headers["ETag"]


@pytest.mark.parametrize("body", [None, {"completed": True}])
def test_a_retried_toggle_does_not_flip_twice(client, create_task, body):
    task = create_task()
    path = f"/api/{USER}/tasks/{task['id']}/complete"
    key = new_key()
    first = client.patch(path, json=body, headers=with_key(key))
    assert first.status_code == 200 and first.get_json()["completed"] is True
    for _ in range(3):
        assert_replay_of(client.patch(path, json=body, headers=with_key(key)), first)
    assert client.get(f"/api/{USER}/tasks/{task['id']}", headers=bearer()).get_json()["completed"]


def test_a_retried_delete_is_204_again_not_404(client, create_task):
    task = create_task()
    path = f"/api/{USER}/tasks/{task['id']}"
    key = new_key()
    first = client.delete(path, headers=with_key(key))
    assert first.status_code == 204 and first.get_data() == b""
    replay = client.delete(path, headers=with_key(key))
    assert_replay_of(replay, first)
    assert "Content-Type" not in replay.headers
    # Without the key the task is simply gone.
    assert_problem(client.delete(path, headers=bearer()), 404)


def test_keys_of_one_user_never_collide_with_anothers(client):
    key = new_key()
    answers = {
        user: client.post(f"/api/{user}/tasks", json={"title": "same"}, headers=with_key(key, user))
        for user in ("alice", "bob")
    }
    assert all(answer.status_code == 201 for answer in answers.values())
    assert all(REPLAYED not in answer.headers for answer in answers.values())
    assert answers["alice"].get_json()["id"] != answers["bob"].get_json()["id"]
    for user, first in answers.items():
        replay = client.post(f"/api/{user}/tasks", json={"title": "same"},
                             headers=with_key(key, user))
        assert_replay_of(replay, first)
        assert len(tasks_of(client, user)) == 1


def test_a_path_with_a_nul_is_fingerprinted_and_answered_like_any(client):
    path = f"/api/{USER}/tasks/%00/complete"
    for _ in range(2):
        assert_problem(client.patch(path, headers=with_key("nul")), 404)


def test_a_key_on_a_safe_method_is_ignored(client, create_task):
    task = create_task()
    for key in (new_key(), "not a valid key"):
        response = client.get(f"/api/{USER}/tasks/{task['id']}", headers=with_key(key))
        assert response.status_code == 200 and REPLAYED not in response.headers


# ---------------------------------------------------------------- 422 and 409


def test_the_same_key_for_another_request_is_422_and_changes_nothing(client, app, create_task):
    task, other = create_task(title="one"), create_task(title="two")
    path = f"/api/{USER}/tasks/{task['id']}"
    key = new_key()
    assert client.patch(path, json={"title": "edited"}, headers=with_key(key)).status_code == 200
    before = tasks_of(client)
    attempts = [
        ("PATCH", path, {"title": "something else"}, "body"),
        ("PUT", path, {"title": "edited"}, "method"),
        ("PATCH", f"/api/{USER}/tasks/{other['id']}", {"title": "edited"}, "path"),
        ("POST", f"/api/{USER}/tasks", {"title": "edited"}, "method and path"),
        ("DELETE", path, None, "method and body"),
        ("DELETE", f"/api/{USER}/tasks/{other['id']}", None, "method, path and body"),
    ]
    for method, target, body, named in attempts:
        response = client.open(target, method=method, json=body, headers=with_key(key))
        problem = assert_problem(response, 422)
        assert f"a different {named})" in problem["detail"]
        assert KEY_HEADER in problem["errors"]["header"]
        assert REPLAYED not in response.headers
    assert tasks_of(client) == before
    # The key still answers its own request.
    replay = client.patch(path, json={"title": "edited"}, headers=with_key(key))
    assert replay.status_code == 200 and replay.headers[REPLAYED] == "true"
    assert len(kept_rows(app)) == 1


@pytest.fixture
def held_create(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Creates wait in the view until `release` is set; `entered` says one is waiting."""
    entered, release = threading.Event(), threading.Event()
    create = writes.create_task

    def held(user_id: str, fields: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return create(user_id, fields)

    monkeypatch.setattr(writes, "create_task", held)
    yield entered, release
    release.set()


def test_the_same_key_while_the_first_request_runs_is_409(app, held_create):
    entered, release = held_create
    key = new_key()
    results: dict[str, Any] = {}

    def first_request() -> None:
        results["first"] = app.test_client().post(
            f"/api/{USER}/tasks", json={"title": "slow"}, headers=with_key(key)
        )

    thread = threading.Thread(target=first_request)
    thread.start()
    assert entered.wait(10)
    client = app.test_client()
    during = client.post(f"/api/{USER}/tasks", json={"title": "slow"}, headers=with_key(key))
    assert_problem(during, 409)
    assert during.headers["Retry-After"] == "1"
    # A different body is 422 even while the first runs: retrying it would never work.
    assert_problem(
        client.post(f"/api/{USER}/tasks", json={"title": "other"}, headers=with_key(key)), 422
    )
    release.set()
    thread.join(30)
    first = results["first"]
    assert first.status_code == 201
    assert_replay_of(
        client.post(f"/api/{USER}/tasks", json={"title": "slow"}, headers=with_key(key)), first
    )
    assert [task["title"] for task in tasks_of(client)] == ["slow"]


# ---------------------------------------------------------------- failures run again


def test_a_failed_request_keeps_nothing_and_runs_again(client, app, create_task):
    key = new_key()
    invalid = client.post(f"/api/{USER}/tasks", json={"title": ""}, headers=with_key(key))
    assert_problem(invalid, 400)
    assert kept_rows(app) == []
    assert_problem(client.post(f"/api/{USER}/tasks", json={"title": ""}, headers=with_key(key)), 400)

    missing = f"/api/{USER}/tasks/{uuid.uuid4()}"
    for _ in range(2):
        response = client.delete(missing, headers=with_key(key))
        assert_problem(response, 404)
        assert REPLAYED not in response.headers
    assert kept_rows(app) == []

    task = create_task(title="guarded")
    path = f"/api/{USER}/tasks/{task['id']}"
    stale = client.get(path, headers=bearer()).headers["ETag"]
    assert client.patch(path, json={"title": "moved on"}, headers=bearer()).status_code == 200
    for _ in range(2):
        assert_problem(client.patch(path, json={"title": "mine"},
                                    headers=with_key(key, **{"If-Match": stale})), 412)
    assert kept_rows(app) == []
    assert client.get(path, headers=bearer()).get_json()["title"] == "moved on"


def test_a_request_refused_409_succeeds_when_retried_later(client, app, create_task):
    app.config["MAX_TASKS_PER_USER"] = 1
    blocker = create_task(title="the one allowed")
    key = new_key()
    body = {"title": "wanted"}
    assert_problem(client.post(f"/api/{USER}/tasks", json=body, headers=with_key(key)), 409)
    client.delete(f"/api/{USER}/tasks/{blocker['id']}", headers=bearer())
    retried = client.post(f"/api/{USER}/tasks", json=body, headers=with_key(key))
    assert retried.status_code == 201 and REPLAYED not in retried.headers
    assert [task["title"] for task in tasks_of(client)] == ["wanted"]


def fail_once(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    create = writes.create_task
    failures = [error]

    def failing(user_id: str, fields: Any) -> Any:
        if failures:
            raise failures.pop()
        return create(user_id, fields)

    monkeypatch.setattr(writes, "create_task", failing)


@pytest.mark.parametrize("error, status", [
    (RuntimeError("boom"), 500),
    (sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")), 503),
])
def test_a_500_or_503_releases_the_key_and_the_retry_runs(client, app, monkeypatch, error,
                                                           status):
    fail_once(monkeypatch, error)
    key = new_key()
    assert_problem(client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=with_key(key)),
                   status)
    assert kept_rows(app) == []
    retried = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=with_key(key))
    assert retried.status_code == 201 and REPLAYED not in retried.headers
    assert len(tasks_of(client)) == 1


class WorkerAbort(BaseException):
    """What a worker's timeout or a signal raises: no error handler, no after hooks."""


def test_a_request_that_dies_without_an_answer_releases_its_key_at_teardown(client, app,
                                                                              monkeypatch):
    fail_once(monkeypatch, WorkerAbort())
    key = new_key()
    with pytest.raises(WorkerAbort):
        client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=with_key(key))
    assert kept_rows(app) == []
    assert client.post(f"/api/{USER}/tasks", json={"title": "t"},
                       headers=with_key(key)).status_code == 201


def test_a_failure_to_release_is_logged_and_the_answer_stands(client, app, monkeypatch, capsys):
    """The database gone between the view and the release: the client still gets the view's
    answer; the claim stays in flight until abandoned."""
    fail_once(monkeypatch, RuntimeError("boom"))
    monkeypatch.setattr(idempotency, "RELEASE", sa.text("this is not SQL"))
    key = new_key()
    response = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=with_key(key))
    assert_problem(response, 500)
    assert "could not release the claim" in capsys.readouterr().out
    [row] = kept_rows(app)
    assert row["state"] == "in_flight"


# ---------------------------------------------------------------- time


def test_an_expired_key_is_a_new_key(client, app):
    key = new_key()
    first = client.post(f"/api/{USER}/tasks", json={"title": "day one"}, headers=with_key(key))
    assert first.status_code == 201
    age_keys(app, timedelta(hours=23, minutes=59))
    assert client.post(f"/api/{USER}/tasks", json={"title": "day one"},
                       headers=with_key(key)).headers[REPLAYED] == "true"
    age_keys(app, timedelta(minutes=2))  # now 24 h and 1 min old
    again = client.post(f"/api/{USER}/tasks", json={"title": "day one"}, headers=with_key(key))
    assert again.status_code == 201 and REPLAYED not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    # Expired, even another request may use it.
    age_keys(app, timedelta(hours=25))
    other = client.post(f"/api/{USER}/tasks", json={"title": "day two"}, headers=with_key(key))
    assert other.status_code == 201
    assert len(tasks_of(client)) == 3
    [row] = kept_rows(app)
    assert row["status"] == 201 and json.loads(row["body"])["title"] == "day two"


def test_an_abandoned_claim_is_taken_over_after_the_bound(client, app):
    key = new_key()
    table = IdempotencyKey.__table__
    with app.app_context(), db.engine.begin() as connection:  # a claim whose holder died
        connection.execute(sa.insert(table).values(
            user_id=USER, key=key, method="POST", target=f"/api/{USER}/tasks",
            body_sha256=hashlib.sha256(b'{"title": "t"}').digest(), state="in_flight",
            created_at=utc_now() - timedelta(seconds=59),
        ))
    request = {"data": b'{"title": "t"}', "content_type": "application/json",
               "headers": with_key(key)}
    assert_problem(client.post(f"/api/{USER}/tasks", **request), 409)
    age_keys(app, timedelta(seconds=2))  # 61 s: past IDEMPOTENCY_ABANDONED_AFTER_SECONDS
    taken = client.post(f"/api/{USER}/tasks", **request)
    assert taken.status_code == 201 and REPLAYED not in taken.headers
    assert_replay_of(client.post(f"/api/{USER}/tasks", **request), taken)
    assert len(tasks_of(client)) == 1


def test_claims_purge_a_bounded_number_of_their_users_expired_keys(client, app):
    for user in ("alice", "bob"):
        for number in range(idempotency.PURGE_PER_CLAIM + 5):
            assert client.post(f"/api/{user}/tasks", json={"title": f"t{number}"},
                               headers=with_key(f"old-{number}", user)).status_code == 201
    age_keys(app, timedelta(hours=25))
    assert client.post("/api/alice/tasks", json={"title": "new"},
                       headers=with_key("new", "alice")).status_code == 201
    left = Counter(row["user_id"] for row in kept_rows(app))
    # alice: the new key, and the 5 newest of her old ones; bob's are untouched.
    assert left == {"alice": 6, "bob": idempotency.PURGE_PER_CLAIM + 5}
    alice_old = sorted(int(row["key"][4:]) for row in kept_rows(app)
                       if row["user_id"] == "alice" and row["key"] != "new")
    assert alice_old == list(range(idempotency.PURGE_PER_CLAIM, idempotency.PURGE_PER_CLAIM + 5))


def test_flask_purge_deletes_every_users_expired_keys_only(client, app, runner):
    for user in ("alice", "bob"):
        for number in range(3):
            client.post(f"/api/{user}/tasks", json={"title": "t"}, headers=with_key(f"k{number}", user))
    age_keys(app, timedelta(hours=25), key="k0")
    age_keys(app, timedelta(hours=25), key="k1")
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "idempotency keys: 4 expired deleted"
    assert sorted((row["user_id"], row["key"]) for row in kept_rows(app)) == [
        ("alice", "k2"), ("bob", "k2")
    ]
    again = runner.invoke(args=["purge"]).output.splitlines()
    assert again[0] == "idempotency keys: 0 expired deleted"


def test_flask_purge_works_in_batches(app, monkeypatch):
    monkeypatch.setattr(idempotency, "PURGE_BATCH", 2)
    table = IdempotencyKey.__table__
    old = utc_now() - timedelta(days=2)
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(sa.insert(table), [
                {"user_id": USER, "key": f"k{n}", "method": "POST", "target": "/",
                 "body_sha256": b"0" * 32, "state": "in_flight", "created_at": old}
                for n in range(5)
            ])
        assert idempotency.purge_expired() == 5
    assert kept_rows(app) == []


# ---------------------------------------------------------------- bad keys


@pytest.mark.parametrize("key", [
    "",  # empty
    "k" * 256,  # too long
    "with space",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "caf\xe9",  # non-ASCII as a WSGI server hands it over (latin-1)
    "caf\xc3\xa9",  # é sent as UTF-8
])
def test_a_malformed_key_is_400_naming_the_header_and_changes_nothing(client, app, create_task,
                                                                       key):
    task = create_task(title="keep")
    path = f"/api/{USER}/tasks/{task['id']}"
    for method, target, body in [
        ("POST", f"/api/{USER}/tasks", {"title": "new"}),
        ("PATCH", path, {"title": "changed"}),
        ("PUT", path, {"title": "changed"}),
        ("PATCH", f"{path}/complete", None),
        ("DELETE", path, None),
    ]:
        response = client.open(target, method=method, json=body, headers=bearer(),
                               environ_overrides={"HTTP_IDEMPOTENCY_KEY": key})
        problem = assert_problem(response, 400)
        assert "Idempotency-Key" in problem["detail"]
        assert list(problem["errors"]["header"]) == [KEY_HEADER]
    assert tasks_of(client) == [task]
    assert kept_rows(app) == []


def test_the_longest_and_oddest_valid_keys_work(client):
    for key in ("k" * 255, "!", '"quoted"', "~}|{`_^]\\[@?>=<;:/.-,+*)('&%$#"):
        response = client.post(f"/api/{USER}/tasks", json={"title": "t"}, headers=with_key(key))
        assert response.status_code == 201, key
        assert client.post(f"/api/{USER}/tasks", json={"title": "t"},
                           headers=with_key(key)).headers[REPLAYED] == "true"


# ---------------------------------------------------------------- CORS and OpenAPI


def test_browsers_may_send_the_key_and_read_the_replay_header(client):
    origin = "http://localhost:3000"
    preflight = client.options(f"/api/{USER}/tasks", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    })
    assert preflight.status_code == 204
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower().split(", ")
    assert "idempotency-key" in allowed
    key = new_key()
    for _ in range(2):
        response = client.post(f"/api/{USER}/tasks", json={"title": "t"},
                               headers={**with_key(key), "Origin": origin})
    assert response.headers[REPLAYED] == "true"
    assert REPLAYED in response.headers["Access-Control-Expose-Headers"].split(", ")


def test_openapi_documents_the_key_on_every_unsafe_operation(client):
    spec = client.get("/openapi.json").get_json()
    unsafe = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            takes_key = path.startswith("/api/{user_id}") and method in {
                "post", "put", "patch", "delete"
            }
            keys = [parameter for parameter in operation.get("parameters", [])
                    if parameter["name"] == KEY_HEADER]
            assert len(keys) == int(takes_key), (path, method)
            if not takes_key:
                assert "422" not in operation["responses"]
                continue
            unsafe += 1
            [parameter] = keys
            assert (parameter["in"], parameter["required"]) == ("header", False)
            assert parameter["schema"]["maxLength"] == 255
            responses = operation["responses"]
            assert responses["409"] == {"$ref": "#/components/responses/CONFLICT"}
            assert responses["422"] == {"$ref": "#/components/responses/UNPROCESSABLE_ENTITY"}
            assert responses["400"] == {"$ref": "#/components/responses/BAD_REQUEST"}
            success = [response for status, response in responses.items() if status[0] == "2"]
            assert all("Idempotent-Replayed" in response["headers"] for response in success)
    assert unsafe >= 5
    unprocessable = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]
    assert "Idempotency-Key" in unprocessable["content"]["application/problem+json"]["example"][
        "detail"]


# ---------------------------------------------------------------- cost on the wire


@pytest.mark.parametrize("backend", ["postgresql"])
def test_round_trips_without_a_key_none_added_with_one_three_and_a_replay_two(database_url):
    with proxied_client(database_url) as (client, recorder):
        new_task(client, "counted", title="warm-up")

        def create(headers: dict[str, str]) -> Any:
            return lambda: client.post("/api/counted/tasks", json={"title": "t"}, headers=headers)

        assert len(round_trips(recorder, create(bearer("counted")))) == 1
        key = with_key(new_key(), "counted")
        sent = round_trips(recorder, create(key))
        assert len(sent) == 3, sent
        assert "INSERT INTO idempotency_keys" in sent[0] and "INSERT INTO tasks" in sent[1]
        assert sent[2].startswith("SET LOCAL statement_timeout") and "UPDATE idempotency_keys" in sent[2]
        # The claim need not wait for the disk (the write after it does); the kept response must.
        assert "SET LOCAL synchronous_commit = off" in sent[0]
        assert "synchronous_commit" not in sent[1] + sent[2]
        sent = round_trips(recorder, create(key))
        assert len(sent) == 2, sent
        assert "INSERT INTO tasks" not in " ".join(sent)
        # A failed request: claim, view, release (without waiting for the disk).
        sent = round_trips(recorder, lambda: client.delete(
            f"/api/counted/tasks/{uuid.uuid4()}", headers=with_key(new_key(), "counted")))
        assert len(sent) == 3, sent
        assert "DELETE FROM idempotency_keys" in sent[2] and "synchronous_commit = off" in sent[2]


# ---------------------------------------------------------------- gunicorn, 50 at once


class TestConcurrentRetriesAgainstGunicorn:
    @pytest.fixture
    def backend(self) -> str:
        return "postgresql"

    def test_fifty_retries_of_one_post_create_exactly_one_task(self, database_url):
        parallel = 50
        server = Gunicorn(database_url, WEB_CONCURRENCY="2", GUNICORN_THREADS="8")
        key = new_key()
        try:
            answers = self._retries(server.base, key, parallel)
            final = self._post(server.base, "racer", key)  # once all are answered: a replay
        finally:
            server.stop()
        statuses = Counter(
            "replay" if headers.get(REPLAYED) == "true" else status
            for status, _, headers in answers
        )
        print(f"50 concurrent retries: {dict(statuses)}")
        assert set(statuses) <= {201, "replay", 409}, statuses
        assert statuses[201] == 1, statuses
        first = next(answer for answer in answers
                     if answer[0] == 201 and REPLAYED not in answer[2])
        for status, body, headers in answers:
            if status == 201:
                assert body == first[1]
                assert (headers["ETag"], headers["Location"]) == (first[2]["ETag"],
                                                                  first[2]["Location"])
            else:
                assert body["status"] == 409 and headers["Retry-After"] == "1"
        assert (final[0], final[1], final[2].get(REPLAYED)) == (201, first[1], "true")
        engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            count = connection.execute(sa.text(
                "SELECT count(*) FROM tasks WHERE user_id = 'racer' AND title = 'once'"
            )).scalar()
        engine.dispose()
        assert count == 1

    @staticmethod
    def _post(base: str, user: str, key: str) -> tuple[int, Any, dict[str, str]]:
        request = urllib.request.Request(
            f"{base}/api/{user}/tasks", data=json.dumps({"title": "once"}).encode(),
            method="POST",
            headers={**bearer(user), "Content-Type": "application/json", KEY_HEADER: key},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    def _retries(self, base: str, key: str, parallel: int
                 ) -> list[tuple[int, Any, dict[str, str]]]:
        start = threading.Barrier(parallel)

        def retry(_: int) -> tuple[int, Any, dict[str, str]]:
            start.wait(30)
            return self._post(base, "racer", key)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return list(pool.map(retry, range(parallel)))
