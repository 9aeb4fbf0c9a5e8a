"""Every error is problem+json: routing, methods, bodies, unexpected exceptions, the database."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask

from tests.conftest import assert_problem, bearer, make_config
from todo import create_app
from todo.extensions import db

PROBLEM = "application/problem+json"


def test_unknown_path_is_404_problem(client):
    assert_problem(client.get("/nope"), 404)
    assert_problem(client.get("/api/user-a/nope", headers=bearer()), 404)


@pytest.mark.parametrize("path", [
    "/api//user-a/tasks", "/api/user-a//tasks", "/api/user-a/tasks//", "/static//x.js", "//health//",
])
def test_empty_path_segments_are_404_problems_not_html_redirects(client, path):
    """werkzeug would answer these with an HTML 308 to the path with the slashes merged."""
    response = client.get("/", environ_overrides={"PATH_INFO": path}, headers=bearer())
    assert response.status_code == 404 and response.mimetype == PROBLEM
    assert "Location" not in response.headers


@pytest.mark.parametrize("path", ["/api/user-a/tasks", "/api/user-a/tags", "/health", "/docs", "/nope"])
def test_options_without_a_preflight_is_204_with_allow_and_no_body(client, path):
    response = client.options(path)
    if path == "/nope":
        assert_problem(response, 404)
        return
    assert response.status_code == 204
    assert response.data == b"" and "Content-Type" not in response.headers
    assert "GET" in response.headers["Allow"].split(", ")


@pytest.mark.parametrize("query", ["\x80", "limit=5&\xff", "search=\xc3"])
def test_a_query_string_that_is_not_utf8_is_400(client, query):
    """Bytes a server passes through undecoded (not percent-encoded): werkzeug's strict
    decoding of them was a 500."""
    response = client.get("/", environ_overrides={"PATH_INFO": "/api/user-a/tasks", "QUERY_STRING": query},
                          headers=bearer())
    body = assert_problem(response, 400)
    assert "UTF-8" in body["detail"]


def test_a_raw_utf8_query_string_is_read_as_utf8(client):
    raw = "search=é".encode().decode("latin-1")  # as a WSGI server hands it over
    response = client.get("/", environ_overrides={"PATH_INFO": "/api/user-a/tasks", "QUERY_STRING": raw},
                          headers=bearer())
    assert response.status_code == 200


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/user-a/tasks", headers=bearer())
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_body_over_limit_is_413(client):
    response = client.post(
        "/api/user-a/tasks",
        data=json.dumps({"title": "x", "description": "y" * 70_000}),
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert_problem(response, 413)
    assert client.get("/api/user-a/tasks", headers=bearer()).get_json()["total"] == 0


def test_non_json_content_type_is_415(client):
    response = client.post(
        "/api/user-a/tasks", data="title=x", headers={**bearer(), "Content-Type": "text/plain"}
    )
    assert_problem(response, 415)


def test_validation_is_400_with_errors_by_location(client):
    response = client.post("/api/user-a/tasks", json={"title": ""}, headers=bearer())
    body = assert_problem(response, 400)
    assert "title" in body["errors"]["json"]
    assert "title" in body["detail"]


@pytest.fixture
def failing_app(app: Flask) -> Flask:
    def explode(user_id: str) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/api/<user_id>/explode", "explode", explode)
    return app


def test_unexpected_exception_is_generic_500(failing_app, capsys):
    response = failing_app.test_client().get("/api/user-a/explode", headers=bearer())
    body = assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert body["detail"] == "An unexpected error occurred; it has been logged."
    log = capsys.readouterr().out
    assert "Traceback" in log and "RuntimeError" in log
    assert response.headers["X-Request-ID"] in log


class TestDatabaseUnavailable:
    """A PostgreSQL URL where nothing listens: every API call is a quick 503."""

    @pytest.fixture
    def app(self) -> Any:
        app = create_app(make_config("postgresql://postgres@127.0.0.1:1/none"))
        yield app
        with app.app_context():
            db.engine.dispose()

    @pytest.mark.parametrize(
        "method, path, body",
        [
            ("GET", "/api/user-a/tasks", None),
            ("POST", "/api/user-a/tasks", {"title": "x"}),
            ("GET", "/api/user-a/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", None),
            ("PATCH", "/api/user-a/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", {"title": "y"}),
            ("DELETE", "/api/user-a/tasks/7f0e3c1e-5d2a-4c1e-9a53-0c1d2e3f4a5b", None),
            ("GET", "/api/user-a/tags", None),
        ],
    )
    def test_api_is_503_with_retry_after(self, client, method, path, body):
        started = time.monotonic()
        response = client.open(path, method=method, json=body, headers=bearer())
        assert time.monotonic() - started < 2
        assert_problem(response, 503)
        assert int(response.headers["Retry-After"]) > 0
        assert "127.0.0.1" not in response.get_data(as_text=True)

    def test_liveness_stays_up_and_readiness_fails(self, client):
        assert client.get("/health").status_code == 200
        assert_problem(client.get("/health/ready"), 503)


class TestRequestId:
    def test_generated_when_absent(self, client):
        first = client.get("/health").headers["X-Request-ID"]
        second = client.get("/health").headers["X-Request-ID"]
        assert first and second and first != second

    def test_sane_client_id_is_kept_on_success_and_error(self, client):
        for path in ("/health", "/nope"):
            response = client.get(path, headers={"X-Request-ID": "frontend-123.abc"})
            assert response.headers["X-Request-ID"] == "frontend-123.abc"

    @pytest.mark.parametrize("offered", ["has space", "x" * 200, "inject\"quote", "ünï"])
    def test_insane_client_id_is_replaced(self, client, offered):
        response = client.get("/health", headers={"X-Request-ID": offered})
        assert response.headers["X-Request-ID"] != offered
        assert len(response.headers["X-Request-ID"]) == 32

    def test_an_id_ending_in_a_newline_is_replaced(self, client):
        # No HTTP parser hands the app such a value, but a pattern's `$` would let it through.
        response = client.get("/health", environ_overrides={"HTTP_X_REQUEST_ID": "abc\n"})
        assert response.status_code == 200
        assert len(response.headers["X-Request-ID"]) == 32

    def test_log_line_carries_the_id(self, client, capsys):
        client.get("/api/user-a/tasks", headers={**bearer(), "X-Request-ID": "trace-42"})
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
        access = [line for line in lines if line.get("logger") == "todo.access"]
        assert access[-1]["request_id"] == "trace-42"
        assert access[-1]["path"] == "/api/<user_id>/tasks"
        assert access[-1]["status"] == 200
        assert access[-1]["user_id"] == "user-a"
        assert access[-1]["method"] == "GET"
        assert access[-1]["duration_ms"] >= 0


class TestCors:
    ORIGIN = "http://localhost:3000"

    def test_preflight_allows_the_frontend(self, client):
        response = client.options(
            "/api/user-a/tasks",
            headers={
                "Origin": self.ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type, If-Match",
            },
        )
        assert response.status_code == 204 and "Content-Type" not in response.headers
        assert response.headers["Access-Control-Allow-Origin"] == self.ORIGIN
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "if-match"} <= set(allowed.split(", "))

    @pytest.mark.parametrize("path, headers", [
        ("/api/user-a/tasks", {}),  # 401
        ("/api/user-b/tasks", bearer()),  # 403
        ("/api/user-a/tasks?limit=0", bearer()),  # 400
        ("/api/user-a/tasks", bearer()),  # 200
    ])
    def test_every_response_to_an_allowed_origin_is_readable(self, client, path, headers):
        response = client.get(path, headers={**headers, "Origin": self.ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] == self.ORIGIN
        assert "Origin" in response.headers["Vary"]
        exposed = response.headers["Access-Control-Expose-Headers"]
        assert {"ETag", "Location", "X-Request-ID"} <= set(exposed.split(", "))

    def test_other_origins_get_no_cors_headers(self, client):
        response = client.get(
            "/api/user-a/tasks", headers={**bearer(), "Origin": "https://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in response.headers


def test_security_headers(client):
    api = client.get("/api/user-a/tasks", headers=bearer())
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["Cache-Control"] == "no-store"
    error = client.get("/api/user-a/tasks")
    assert error.headers["X-Content-Type-Options"] == "nosniff"
    assert error.headers["Cache-Control"] == "no-store"
