"""`/metrics` for operators: absent (404) without METRICS_TOKEN; 401 without the token; with
it, the Prometheus text of request counts and durations by route template, the database pool
gauges and rate-limit refusals.

In-process apps share the process's metrics (prometheus_client keeps one set per process), so
these tests compare a scrape before with one after."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_problem, bearer, make_config
from todo import create_app
from todo.database import reading

TOKEN = "metrics-token-0123456789-abcdefghijklmnop"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS = "todo_http_requests_total"
DURATION = "todo_http_request_duration_seconds"
IN_USE = "todo_db_pool_connections_in_use"
WAITING = "todo_db_pool_waiting"
REFUSALS = "todo_rate_limit_refusals_total"
TASK_ROUTE = "/api/<user_id>/tasks/<task_id>"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: Any) -> Samples:
    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "METRICS_TOKEN": TOKEN}


def test_without_a_metrics_token_there_is_no_metrics_endpoint(database_url):
    client = create_app(make_config(database_url)).test_client()
    assert_problem(client.get("/metrics"), 404)
    assert_problem(client.get("/metrics", headers=SCRAPER), 404)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    bearer("alice"),  # a user's token is not the metrics token
])
def test_a_missing_or_wrong_token_is_a_401(client, headers):
    response = client.get("/metrics", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in body["detail"]
    assert TOKEN not in response.get_data(as_text=True)


def test_the_scheme_is_case_insensitive(client):
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_requests_are_counted_and_timed_by_route_template(client, create_task):
    before = scrape(client)
    task = create_task("alice")
    for _ in range(2):  # the second time from the cached series
        assert client.get(f"/api/alice/tasks/{task['id']}", headers=bearer("alice")).status_code == 200
    missing = f"/api/alice/tasks/{uuid.uuid4()}"
    assert client.get(missing, headers=bearer("alice")).status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.get(missing).status_code == 401

    response = client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    after = parse(text)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert added(REQUESTS, route="/api/<user_id>/tasks", method="POST", status="201") == 1
    assert added(REQUESTS, route=TASK_ROUTE, method="GET", status="200") == 2
    assert added(REQUESTS, route=TASK_ROUTE, method="GET", status="404") == 1
    assert added(REQUESTS, route=TASK_ROUTE, method="GET", status="401") == 1
    assert added(REQUESTS, route="unmatched", method="GET", status="404") == 1
    assert added(f"{DURATION}_count", route=TASK_ROUTE, method="GET") == 4
    assert added(f"{DURATION}_sum", route=TASK_ROUTE, method="GET") > 0
    assert added(f"{DURATION}_bucket", route=TASK_ROUTE, method="GET", le="+Inf") == 4
    bounds = {dict(labels)["le"] for name, labels in after
              if name == f"{DURATION}_bucket" and ("route", TASK_ROUTE) in labels}
    assert bounds == {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                      "1.0", "2.5", "5.0", "+Inf"}
    # Templates, never raw paths: no user id or task id in any label.
    assert "alice" not in text and task["id"] not in text and "no/such" not in text


def test_methods_outside_the_usual_set_share_one_label(client):
    before = scrape(client)
    assert client.open("/health", method="BREW").status_code == 405
    after = scrape(client)
    assert value(after, REQUESTS, route="unmatched", method="other", status="405") == (
        value(before, REQUESTS, route="unmatched", method="other", status="405") + 1
    )
    assert not any(("method", "BREW") in labels for _, labels in after)


def test_the_endpoint_is_not_in_the_openapi_document(client):
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


def test_pool_gauges_count_connections_in_use(app, client):
    idle = scrape(client)
    assert value(idle, IN_USE) == 0 and value(idle, WAITING) == 0
    with app.test_request_context(), reading():
        held = scrape(client)
    assert value(held, IN_USE) == 1
    assert value(scrape(client), IN_USE) == 0


@pytest.fixture
def one_connection_config(app_config: dict[str, Any]) -> dict[str, Any]:
    engine_options = app_config["SQLALCHEMY_ENGINE_OPTIONS"]
    app_config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options, "pool_size": 1, "max_overflow": 0, "pool_timeout": 20,
    }
    return app_config


def test_pool_gauges_count_threads_waiting_for_a_connection(one_connection_config, app, client):
    """The pool's only connection is held; a request waits for it, and is counted waiting."""
    statuses: list[int] = []

    def request_tasks() -> None:
        statuses.append(app.test_client().get("/api/alice/tasks", headers=bearer("alice")).status_code)

    with app.test_request_context(), reading():
        waiter = threading.Thread(target=request_tasks)
        waiter.start()
        deadline = time.monotonic() + 10
        while value(scrape(client), WAITING) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        during = scrape(client)
    waiter.join(20)
    assert value(during, WAITING) == 1 and value(during, IN_USE) == 1
    assert statuses == [200]
    after = scrape(client)
    assert value(after, WAITING) == 0 and value(after, IN_USE) == 0


@pytest.fixture
def limited_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_PER_USER": "2 per minute",
        "RATELIMIT_WRITES_PER_USER": "1 per minute",
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }


def test_rate_limit_refusals_are_counted_by_scope(limited_config):
    client = create_app(limited_config).test_client()
    before = scrape(client)
    statuses = [client.post("/api/alice/tasks", json={"title": "x"}, headers=bearer("alice")).status_code
                for _ in range(2)]
    statuses += [client.get("/api/bob/tasks", headers=bearer("bob")).status_code for _ in range(3)]
    assert statuses == [201, 429, 200, 200, 429]
    # /metrics itself is never limited.
    scrapes = [scrape(client) for _ in range(5)]
    after = scrapes[-1]
    assert value(after, REFUSALS, scope="writes") == value(before, REFUSALS, scope="writes") + 1
    assert value(after, REFUSALS, scope="all") == value(before, REFUSALS, scope="all") + 1
    assert value(after, REQUESTS, route="/api/<user_id>/tasks", method="GET", status="429") >= 1
