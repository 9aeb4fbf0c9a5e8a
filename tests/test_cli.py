"""The `flask` commands: `token create`, `demo-data`, `check`; and a bad configuration.

The README's commands run `.venv/bin/flask ...` from a fresh shell at the repository root, where
`.flaskenv` names the app and the development environment; gunicorn and `import wsgi` never
read it, so they stay production by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert result.output == "Created 15 tasks for demo-user.\n"
    # --reset replaces rather than doubles.
    assert runner.invoke(args=["demo-data", "demo-user", "--reset"]).exit_code == 0
    assert client.get("/api/demo-user/tasks", headers=bearer("demo-user")).get_json()["total"] == 15


def test_demo_data_run_again_adds_only_what_is_missing_and_says_so(runner, client):
    def total() -> int:
        page = client.get("/api/demo-user/tasks", headers=bearer("demo-user")).get_json()
        return int(page["total"])

    assert runner.invoke(args=["demo-data", "demo-user"]).exit_code == 0
    again = runner.invoke(args=["demo-data", "demo-user"])
    assert again.exit_code == 0, again.output
    assert again.output == (
        "Created 0 tasks for demo-user. 15 of the 15 demo tasks were there already;"
        " --reset deletes the user's tasks and starts afresh.\n"
    )
    assert total() == 15
    # A demo task the user deleted comes back; the user's own tasks stay.
    page = client.get("/api/demo-user/tasks?search=milk", headers=bearer("demo-user")).get_json()
    milk = page["data"][0]["id"]
    assert client.delete(f"/api/demo-user/tasks/{milk}", headers=bearer("demo-user")).status_code == 204
    assert client.post("/api/demo-user/tasks", json={"title": "Mine"},
                       headers=bearer("demo-user")).status_code == 201
    result = runner.invoke(args=["demo-data", "demo-user"])
    assert result.output.startswith("Created 1 task for demo-user. 14 of the 15 demo tasks")
    assert total() == 16


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


def fresh_shell(script: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    """`script` in a new bash with none of this process's variables (no APP_ENV, FLASK_APP)."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(cwd), **environ}
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=60)


FLASK = Path(sys.executable).parent / "flask"


def test_flask_commands_from_a_fresh_shell_use_the_development_settings(tmp_path):
    # What a newcomer types outside `make`: .flaskenv supplies FLASK_APP=wsgi and
    # APP_ENV=development, so no configuration error and a token the development app accepts.
    database_url = f"sqlite:///{tmp_path / 'todo.db'}"
    result = fresh_shell(f'TOKEN=$({FLASK} token create alice) && echo "$TOKEN"; {FLASK} check',
                         ROOT, DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET)
    token, *check = result.stdout.splitlines()
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "alice"
    assert "environment: development" in check
    # `check` refuses the unmigrated database, on stderr, with the command that fixes it.
    assert result.returncode == 1
    assert "migrations are not at head" in result.stderr and "db upgrade" in result.stderr


def test_a_failing_command_says_why_on_the_terminal_and_leaves_the_variable_empty(tmp_path):
    # `TOKEN=$(...)` captures stdout only: the reason goes to stderr, which stays on the
    # terminal, and the exit status is non-zero, so `&&` stops before a request with no token.
    result = fresh_shell(f'TOKEN=$({FLASK} token create alice) && echo "token: $TOKEN"', ROOT,
                         APP_ENV="production", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "todo-api: configuration error: set BETTER_AUTH_SECRET (at least 32 bytes) or "
        "JWT_JWKS_URL; refusing to start with no way to verify tokens"
    ]


def test_production_servers_never_read_flaskenv(tmp_path):
    # gunicorn and `import wsgi` at the repository root, APP_ENV unset: production, which
    # refuses to start without a secret, and says APP_ENV was not set.
    assert "APP_ENV=development" in (ROOT / ".flaskenv").read_text()
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                   "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    for command in ([sys.executable, "-c", "import wsgi"],
                    [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                     "--bind", "127.0.0.1:0", "wsgi:app"]):
        result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 1, command
        assert "todo-api: configuration error: set BETTER_AUTH_SECRET" in result.stderr
        assert "APP_ENV is not set, so production applies" in result.stderr
    # The image copies named files only (never .flaskenv) and sets production itself.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert ".flaskenv" not in dockerfile and "APP_ENV=production" in dockerfile
    assert ".flaskenv" in (ROOT / ".dockerignore").read_text().split()


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
