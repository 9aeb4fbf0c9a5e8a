"""The `flask` commands: `token create`, `demo-data`, `check`; and a bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt

from tests.conftest import SECRET, bearer, make_config
from tests.gunicorn_server import ROOT
from todo import create_app


def test_token_create_prints_a_token_the_api_accepts(runner, client):
    result = runner.invoke(args=["token", "create", "cli-user", "--ttl", "120"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "cli-user"
    assert claims["exp"] - claims["iat"] == 120
    response = client.get("/api/cli-user/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_token_create_carries_issuer_audience_and_profile(app, runner):
    app.config.update(JWT_ISSUER="http://localhost:3000", JWT_AUDIENCE="http://localhost:3000")
    result = runner.invoke(args=["token", "create", "u", "--email", "u@example.com", "--name", "U"])
    claims = jwt.decode(
        result.output.strip(), SECRET, algorithms=["HS256"], audience="http://localhost:3000"
    )
    assert (claims["iss"], claims["aud"], claims["email"], claims["name"]) == (
        "http://localhost:3000", "http://localhost:3000", "u@example.com", "U"
    )


def test_token_create_without_secret_fails_clearly(app, runner):
    app.config["BETTER_AUTH_SECRET"] = ""
    result = runner.invoke(args=["token", "create", "u"])
    assert result.exit_code != 0
    assert "BETTER_AUTH_SECRET" in result.output


def test_token_create_rejects_an_overlong_user_id(runner):
    result = runner.invoke(args=["token", "create", "x" * 256])
    assert result.exit_code != 0


def test_demo_data_creates_a_realistic_set_for_the_user(runner, client):
    result = runner.invoke(args=["demo-data", "demo-user"])
    assert result.exit_code == 0, result.output
    page = client.get("/api/demo-user/tasks?limit=100", headers=bearer("demo-user")).get_json()
    assert page["total"] == 15
    assert {task["priority"] for task in page["data"]} == {"High", "Medium", "Low"}
    assert any(task["completed"] for task in page["data"])
    assert any(task["due_date"] is None for task in page["data"])
    tags = client.get("/api/demo-user/tags", headers=bearer("demo-user")).get_json()
    assert tags[0] == {"name": "work", "usage_count": 4}
    # --reset replaces rather than doubles.
    assert runner.invoke(args=["demo-data", "demo-user", "--reset"]).exit_code == 0
    assert client.get("/api/demo-user/tasks", headers=bearer("demo-user")).get_json()["total"] == 15


def test_check_passes_on_a_migrated_database(runner):
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "migrations:  at head" in result.output and result.output.rstrip().endswith("ok")


def test_check_fails_clearly_when_migrations_are_missing(tmp_path):
    app = create_app(make_config(f"sqlite:///{tmp_path / 'empty.db'}"))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code != 0
    assert "migrations are not at head (database: empty" in result.output


def test_check_fails_clearly_when_the_database_does_not_answer():
    app = create_app(make_config("postgresql://postgres:pw@127.0.0.1:1/nowhere"))
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code != 0
    assert "the database does not answer" in result.output
    assert "pw@" not in result.output


def test_a_bad_configuration_stops_the_app_with_one_line(tmp_path):
    environment = {"PATH": os.environ["PATH"], "APP_ENV": "production",
                   "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "todo-api: configuration error: set BETTER_AUTH_SECRET (at least 32 bytes) or "
        "JWT_JWKS_URL; refusing to start with no way to verify tokens"
    ]
