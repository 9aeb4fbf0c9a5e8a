"""`/metrics` for operators: absent (404) without METRICS_TOKEN; 401 without the token; with
it, the Prometheus text of request counts and durations by route template, the database pool
gauges and rate-limit refusals. Under gunicorn, every worker's counts add up in any worker's
scrape (prometheus_client's multiprocess mode), a killed worker included.

In-process apps share the process's metrics (prometheus_client keeps one set per process), so
these tests compare a scrape before with one after."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_problem, bearer, make_config
from tests.gunicorn_server import Gunicorn, refusal
from todo import create_app
from todo.data.database import reading

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


# ---------------------------------------------------------------- gunicorn, two workers


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "todo.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A GET on a new connection (so the kernel picks a worker for each)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def api_requests(samples: Samples) -> float:
    return sum(count for (name, labels), count in samples.items()
               if name == REQUESTS and ("route", "/api/<user_id>/tasks") in labels)


def metrics_files(worker_pid: int) -> list[str]:
    """The files a worker of a server started without PROMETHEUS_MULTIPROC_DIR writes to (in
    the directory gunicorn.conf.py made)."""
    return glob.glob(os.path.join(tempfile.gettempdir(), "todo-api-metrics-*", f"*_{worker_pid}.db"))


def scrape_server(server: Gunicorn) -> Samples:
    status, text = http_get(f"{server.base}/metrics", SCRAPER)
    assert status == 200, text
    return parse(text)


@pytest.fixture
def server(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gunicorn]:
    # Without PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes a directory), the way a
    # deployment that knows nothing of it runs.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = Gunicorn(sqlite_url, METRICS_TOKEN=TOKEN, WEB_CONCURRENCY="2")
    yield server
    server.stop()


def test_two_workers_counts_add_up_and_survive_a_killed_worker(server):
    workers = server.worker_pids()
    assert len(workers) == 2
    sent = 60
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(
            lambda _: http_get(f"{server.base}/api/alice/tasks", bearer("alice"))[0], range(sent)
        ))
    assert statuses == [200] * sent

    # Each worker counted what it served, in its own file; the kernel gave each some.
    served = {}
    for pid in workers:
        counter_files = [path for path in metrics_files(pid) if "counter_" in path]
        assert len(counter_files) == 1, metrics_files(pid)
        served[pid] = api_requests(parse_files(counter_files))
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) == sent
    directory = os.path.dirname(metrics_files(workers[0])[0])

    # Whichever worker answers a scrape, it reports both workers' requests.
    for _ in range(6):
        samples = scrape_server(server)
        assert api_requests(samples) == sent
        assert value(samples, IN_USE) == 0 and value(samples, WAITING) == 0

    killed = workers[0]
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        replaced = server.worker_pids()
        if len(replaced) == 2 and killed not in replaced and all(
            any("gauge_livesum" in path for path in metrics_files(pid)) for pid in replaced
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"gunicorn did not replace worker {killed}: {server.output()[-2000:]}")
    # The killed worker's gauges were dropped (child_exit); its counts still count.
    assert not glob.glob(os.path.join(directory, f"gauge_*_{killed}.db"))
    for _ in range(6):
        assert api_requests(scrape_server(server)) == sent

    server.stop()
    assert not os.path.exists(directory)  # removed when the server stopped (on_exit)


def parse_files(paths: list[str]) -> Samples:
    samples: Samples = {}
    for family in MultiProcessCollector.merge(paths):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_gunicorn_refuses_a_metrics_directory_that_does_not_exist(sqlite_url, tmp_path):
    missing = tmp_path / "missing"
    code, output = refusal(sqlite_url, PROMETHEUS_MULTIPROC_DIR=str(missing),
                           METRICS_TOKEN=TOKEN, WEB_CONCURRENCY="1")
    assert code != 0
    assert f"todo-api: configuration error: PROMETHEUS_MULTIPROC_DIR '{missing}' is not a" \
           " directory" in output
    assert "Booting worker" not in output
