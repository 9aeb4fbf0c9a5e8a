"""Per-user rate limits: keyed by the token's `sub` (by address without a valid token),
429 problem+json with `Retry-After`, shared between workers through Redis; gunicorn with
several workers refuses to count per process."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import IN_CI, bearer, make_config, redis_reachable
from tests.gunicorn_server import Gunicorn, refusal
from todo import create_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def limited_app(database_url: str, **environ: str):
    return create_app(make_config(
        database_url,
        RATELIMIT_ENABLED="true",
        RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
        **environ,
    ))


def assert_429(response) -> None:
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 429 and "limit" in body["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 61  # a one-minute window, rounded up


def test_limit_per_user_then_429(database_url):
    client = limited_app(database_url, RATELIMIT_PER_USER="5 per minute").test_client()
    for _ in range(5):
        assert client.get("/api/alice/tasks", headers=bearer("alice")).status_code == 200
    assert_429(client.get("/api/alice/tasks", headers=bearer("alice")))
    # Another user has a budget of their own, and health checks are never limited.
    assert client.get("/api/bob/tasks", headers=bearer("bob")).status_code == 200
    assert all(client.get("/health").status_code == 200 for _ in range(10))


def test_writes_have_a_tighter_limit_of_their_own(database_url):
    client = limited_app(
        database_url, RATELIMIT_PER_USER="100 per minute", RATELIMIT_WRITES_PER_USER="2 per minute"
    ).test_client()
    for _ in range(2):
        assert client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice")).status_code == 201
    assert_429(client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice")))
    assert client.get("/api/alice/tasks", headers=bearer("alice")).get_json()["total"] == 2


def test_requests_without_a_valid_token_are_limited_by_address(database_url):
    client = limited_app(database_url, RATELIMIT_PER_USER="3 per minute").test_client()
    for _ in range(3):
        assert client.get("/api/alice/tasks").status_code == 401
    assert_429(client.get("/api/alice/tasks", headers={"Authorization": "Bearer junk"}))
    # A valid token is its own key, not the address's.
    assert client.get("/api/alice/tasks", headers=bearer("alice")).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_callers(database_url):
    """Behind nginx (TRUSTED_PROXY_COUNT=1) every request comes from nginx's address: callers
    without a valid token are told apart by the address nginx appends to X-Forwarded-For.
    One a client wrote itself comes before it and does not count."""
    client = limited_app(database_url, RATELIMIT_PER_USER="2 per minute",
                         TRUSTED_PROXY_COUNT="1").test_client()
    for _ in range(2):
        assert client.get("/api/alice/tasks",
                          headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 401
    assert_429(client.get("/api/alice/tasks", headers={"X-Forwarded-For": "203.0.113.7"}))
    assert_429(client.get("/api/alice/tasks",
                          headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}))
    assert client.get("/api/alice/tasks",
                      headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 401


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(database_url):
    client = limited_app(database_url, RATELIMIT_PER_USER="2 per minute").test_client()
    for address in ("203.0.113.7", "203.0.113.8"):
        assert client.get("/api/alice/tasks",
                          headers={"X-Forwarded-For": address}).status_code == 401
    assert_429(client.get("/api/alice/tasks", headers={"X-Forwarded-For": "203.0.113.9"}))


def test_malformed_tokens_count_against_the_address_like_other_401s(database_url):
    """A token whose header `alg` is a list once failed before the limiter ran (a 500, never
    counted); it is a 401 like any other bad token, and counts."""
    client = limited_app(database_url, RATELIMIT_PER_USER="3 per minute").test_client()
    odd = {"Authorization": "Bearer eyJhbGciOlsiSFMyNTYiXX0.e30.c2ln"}  # {"alg": ["HS256"]}
    for _ in range(3):
        response = client.get("/api/alice/tasks", headers=odd)
        assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert_429(client.get("/api/alice/tasks", headers=odd))
    assert_429(client.get("/api/alice/tasks"))  # the same address, without a token


def test_a_429_is_readable_by_the_frontend(database_url):
    client = limited_app(database_url, RATELIMIT_PER_USER="1 per minute").test_client()
    origin = {"Origin": "http://localhost:3000"}
    client.get("/api/alice/tasks", headers={**bearer("alice"), **origin})
    response = client.get("/api/alice/tasks", headers={**bearer("alice"), **origin})
    assert_429(response)
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


@pytest.fixture
def redis_url() -> str:
    if not redis_reachable():
        if IN_CI:
            pytest.fail("Redis is not reachable at 127.0.0.1:6379 (CI=true)", pytrace=False)
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    return REDIS_URL


def test_workers_share_counters_through_redis(database_url, redis_url):
    prefix = f"test-{uuid.uuid4().hex}"
    environ = {"RATELIMIT_STORAGE_URI": redis_url, "RATELIMIT_KEY_PREFIX": prefix,
               "RATELIMIT_PER_USER": "4 per minute", "RATELIMIT_ENABLED": "true"}
    worker_1 = create_app(make_config(database_url, **environ)).test_client()
    worker_2 = create_app(make_config(database_url, **environ)).test_client()
    for client in (worker_1, worker_2, worker_1, worker_2):
        assert client.get("/api/alice/tasks", headers=bearer("alice")).status_code == 200
    assert_429(worker_1.get("/api/alice/tasks", headers=bearer("alice")))
    assert_429(worker_2.get("/api/alice/tasks", headers=bearer("alice")))


def test_redis_outage_does_not_fail_requests(database_url):
    client = limited_app(
        database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", RATELIMIT_PER_USER="3 per minute"
    ).test_client()
    statuses = [client.get("/api/alice/tasks", headers=bearer("alice")).status_code for _ in range(5)]
    # Served from the in-memory fallback: still limited, never an error.
    assert statuses == [200, 200, 200, 429, 429]


# ---------------------------------------------------------------- the production server


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database for gunicorn (these tests are about the server, once)."""
    path = tmp_path / "todo.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def fan_out(base: str, method: str, user: str, count: int) -> Counter[int]:
    """`count` requests at once over 16 threads, each on a new connection (so the kernel
    spreads them over the workers' sockets); how many got each status."""
    headers = {**bearer(user), "Content-Type": "application/json"}
    body = json.dumps({"title": "x"}).encode() if method == "POST" else None

    def call(_: int) -> int:
        request = urllib.request.Request(f"{base}/api/{user}/tasks", data=body,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    with ThreadPoolExecutor(16) as pool:
        return Counter(pool.map(call, range(count)))


LIMITED = {"RATELIMIT_ENABLED": "true", "RATELIMIT_PER_USER": "30 per minute",
           "RATELIMIT_WRITES_PER_USER": "10 per minute", "WEB_CONCURRENCY": "2"}


def test_two_workers_let_exactly_the_limit_through_with_redis(sqlite_url, redis_url):
    server = Gunicorn(sqlite_url, **LIMITED, RATELIMIT_STORAGE_URI=redis_url,
                      RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}")
    try:
        assert len(server.worker_pids()) == 2
        assert fan_out(server.base, "GET", "reader", 90) == {200: 30, 429: 60}
        assert fan_out(server.base, "POST", "writer", 30) == {201: 10, 429: 20}
    finally:
        server.stop()


def test_two_workers_refuse_to_start_with_per_process_counters(sqlite_url):
    code, output = refusal(sqlite_url, **LIMITED)  # RATELIMIT_STORAGE_URI defaults to memory://
    assert code != 0
    refusals = [line for line in output.splitlines() if line.startswith("todo-api:")]
    assert refusals == [
        "todo-api: configuration error: RATELIMIT_STORAGE_URI is memory:// with 2 workers, so"
        " each would count on its own and let every user through 2 times the limit; set"
        " RATELIMIT_STORAGE_URI=redis://... (or RATELIMIT_ALLOW_PER_PROCESS=true); refusing to"
        " start"
    ]
    assert "Booting worker" not in output


def test_per_process_counters_when_explicitly_allowed_let_more_through(sqlite_url):
    """What the refusal prevents: each worker counts on its own."""
    server = Gunicorn(sqlite_url, **LIMITED, RATELIMIT_ALLOW_PER_PROCESS="true")
    try:
        statuses = fan_out(server.base, "GET", "reader", 90)
        assert statuses[200] > 30 and statuses[200] + statuses[429] == 90, statuses
    finally:
        server.stop()


def test_one_worker_may_count_in_its_own_memory(sqlite_url):
    server = Gunicorn(sqlite_url, **{**LIMITED, "WEB_CONCURRENCY": "1"})
    try:
        assert fan_out(server.base, "GET", "reader", 40) == {200: 30, 429: 10}
    finally:
        server.stop()


def test_any_refused_setting_stops_gunicorn_in_one_line_instead_of_restarting_workers(sqlite_url):
    code, output = refusal(sqlite_url, BETTER_AUTH_SECRET="short")
    assert code != 0
    assert output.count("todo-api: configuration error: BETTER_AUTH_SECRET is shorter") == 1
    assert "Booting worker" not in output
