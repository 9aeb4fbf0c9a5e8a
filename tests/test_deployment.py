"""The production way of running: gunicorn with the shipped config, and the Docker image.

There is no Docker engine here, so the Dockerfile is checked by reading it, and its
entrypoint script is run with stand-ins for `flask` and `gunicorn` that record how they
were called. The HEALTHCHECK command itself is run against a real gunicorn. The compose
files are parsed: deploy/compose.yaml (several replicas behind nginx) is checked for its
wiring, and its nginx config is the template deploy/cluster.py runs (tests/test_cluster.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
import yaml

from config import check_server_processes, load_config
from tests.conftest import make_config, make_token
from tests.gunicorn_server import ROOT, Gunicorn
from todo import create_app
from todo.extensions import db

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory):
    database = tmp_path_factory.mktemp("gunicorn") / "todo.db"
    url = f"sqlite:///{database}"
    app = create_app(make_config(url))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    server = Gunicorn(url, LOG_LEVEL="INFO")
    yield server
    server.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_gunicorn_serves_the_api_and_writes_json_request_logs(gunicorn):
    token = make_token("prod-user")
    status, headers, body = get(f"{gunicorn.base}/api/prod-user/tasks",
                                {"Authorization": f"Bearer {token}", "X-Request-ID": "gunicorn-1"})
    assert status == 200 and json.loads(body)["total"] == 0
    assert headers["X-Request-ID"] == "gunicorn-1"
    assert get(f"{gunicorn.base}/docs")[0] == 200
    lines = [json.loads(line) for line in gunicorn.output().splitlines() if line.startswith("{")]
    request_line = next(line for line in lines if line.get("request_id") == "gunicorn-1")
    assert request_line["path"] == "/api/<user_id>/tasks" and request_line["status"] == 200
    assert request_line["user_id"] == "prod-user"


def test_an_oversized_token_reaches_the_app_and_is_a_401_problem(gunicorn):
    status, headers, body = get(f"{gunicorn.base}/api/u/tasks",
                                {"Authorization": "Bearer " + "a" * 20_000})
    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["detail"] == "Token is too large."


def test_a_head_over_the_servers_limit_is_a_431_problem(gunicorn):
    status, headers, body = get(f"{gunicorn.base}/api/u/tasks",
                                {"Authorization": "Bearer " + "a" * 100_000})
    assert status == 431
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["X-Request-ID"]
    assert json.loads(body)["status"] == 431


def test_gunicorns_own_warnings_are_logged_after_the_app_has_loaded(gunicorn):
    """A NUL byte in a header makes gunicorn log a warning from the worker, in its own
    format (`%(process)d`); it must come out as a line, not as a "Logging error" block."""
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Odd: a\x00b\r\n\r\n")
        assert connection.recv(100).startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 10
    while "Invalid request from ip=" not in gunicorn.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    output = gunicorn.output()
    warning = next(line for line in output.splitlines() if "Invalid request from ip=" in line)
    assert re.match(r"\[.+\] \[\d+\] \[WARNING\] Invalid request from ip=127\.0\.0\.1", warning)
    assert "Logging error" not in output


def test_dockerfile_healthcheck_command_passes_against_the_server(gunicorn):
    healthcheck = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\s*$", DOCKERFILE, re.S | re.M)
    assert healthcheck, "the Dockerfile must declare a HEALTHCHECK"
    command = json.loads(healthcheck.group(1).replace("\\\n", ""))
    assert command[0] == "python"
    result = subprocess.run([sys.executable, *command[1:]], env={**os.environ, "PORT": str(gunicorn.port)},
                            timeout=10)
    assert result.returncode == 0


def test_dockerfile_runs_as_non_root_with_a_health_check():
    instructions = [line.split(None, 1) for line in DOCKERFILE.splitlines()
                    if line and not line.startswith((" ", "#"))]
    names = [parts[0] for parts in instructions]
    assert DOCKERFILE.startswith("#") and re.search(r"^FROM python:3\.1[1-9]-slim", DOCKERFILE, re.M)
    user = [parts[1] for parts in instructions if parts[0] == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert "/health" in DOCKERFILE.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["/app/docker-entrypoint.sh"]' in DOCKERFILE
    assert "useradd" in DOCKERFILE


def test_compose_runs_several_workers_with_rate_limits_shared_in_redis():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    api = compose["services"]["api"]
    assert api["build"] == "." and "redis" in api["depends_on"] and "redis" in compose["services"]
    environ = {name: str(value) for name, value in api["environment"].items()}
    assert environ["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0"
    environ["BETTER_AUTH_SECRET"] = "s" * 32  # compose takes it from the host's environment
    config = load_config("production", environ=environ)
    check_server_processes(config, 8)  # does not refuse, however many workers
    assert config["RATELIMIT_ENABLED"] is True


@pytest.fixture
def recording_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH where `flask` and `gunicorn` only record their arguments."""
    calls = tmp_path / "calls.log"
    for program in ("flask", "gunicorn"):
        script = tmp_path / program
        script.write_text(f'#!/bin/sh\necho "{program} $*" >> {shlex.quote(str(calls))}\n')
        script.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, calls


def run_entrypoint(env: dict[str, str]) -> None:
    subprocess.run(["sh", str(ROOT / "docker-entrypoint.sh")], env=env, check=True, timeout=10)


def test_entrypoint_starts_gunicorn_without_migrating_by_default(recording_path):
    env, calls = recording_path
    env.pop("MIGRATE_ON_START", None)
    run_entrypoint(env)
    assert calls.read_text().splitlines() == ["gunicorn --config gunicorn.conf.py wsgi:app"]


def test_entrypoint_migrates_first_when_asked(recording_path):
    env, calls = recording_path
    run_entrypoint({**env, "MIGRATE_ON_START": "1"})
    assert calls.read_text().splitlines() == [
        "flask --app wsgi db upgrade",
        "gunicorn --config gunicorn.conf.py wsgi:app",
    ]



# ---------------------------------------------------------------- deploy/compose.yaml


DEPLOY_COMPOSE = ROOT / "deploy" / "compose.yaml"
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`."""

    def replace(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if environ.get(name):
            return environ[name]
        if kind == "?":
            raise KeyError(f"{name}: {text}")
        return text or ""

    return COMPOSE_VARIABLE.sub(replace, value)


@pytest.fixture
def topology() -> dict[str, dict]:
    return yaml.safe_load(DEPLOY_COMPOSE.read_text())["services"]


def replicas_of(services: dict[str, dict]) -> dict[str, dict]:
    """The services built from the project's Dockerfile that serve the API (not `migrate`)."""
    return {name: service for name, service in services.items()
            if service.get("build") == ".." and "entrypoint" not in service}


def test_deploy_compose_runs_several_replicas_behind_nginx(topology):
    replicas = replicas_of(topology)
    count = sum(int(service.get("deploy", {}).get("replicas", 1)) for service in replicas.values())
    assert count >= 2
    assert {"nginx", "pgbouncer", "redis", "db", "migrate"} <= set(topology)
    nginx = topology["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert set(replicas) <= set(nginx["depends_on"])
    for name, service in topology.items():
        if name != "migrate":  # a one-shot job
            assert "healthcheck" in service or service.get("build") == "..", name
    # The replicas' image has its own HEALTHCHECK, which nginx waits for.
    assert all(nginx["depends_on"][name]["condition"] == "service_healthy" for name in replicas)


def test_deploy_compose_nginx_config_is_the_template_with_the_replicas_as_upstreams(topology):
    from deploy.cluster import render_nginx_conf

    nginx = topology["nginx"]
    mount = next(volume for volume in nginx["volumes"] if volume.startswith("./nginx.conf:"))
    assert mount.split(":")[1] == "/etc/nginx/templates/nginx.conf.template"
    environ = {name: str(value) for name, value in nginx["environment"].items()}
    assert environ["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    values = {name: interpolate(value, {}) for name, value in environ.items()
              if name.startswith("TODO_")}
    # Every placeholder has a value (render refuses otherwise), and what fills it is what the
    # image's envsubst would see: a filter that lets exactly these through.
    config = render_nginx_conf(values)
    assert all(re.search(environ["NGINX_ENVSUBST_FILTER"], name) for name in values)
    upstream = re.search(r"upstream todo_api \{(.*?)\}", config, re.S)
    assert upstream
    servers = re.findall(r"server ([\w.-]+):(\d+)", upstream.group(1))
    replicas = replicas_of(topology)
    assert sorted(host for host, _ in servers) == sorted(replicas)
    assert {port for _, port in servers} == {"8000"}  # the image's PORT
    assert f"listen {values['TODO_LISTEN']} " in config
    assert nginx["ports"] == [f"{values['TODO_LISTEN']}:{values['TODO_LISTEN']}"]
    assert values["TODO_MAX_BODY_SIZE"] == str(load_config(
        "production", environ={"BETTER_AUTH_SECRET": "s" * 32})["MAX_CONTENT_LENGTH"])


def test_deploy_compose_wires_pgbouncer_redis_and_secrets_from_the_environment(topology):
    secrets = {"BETTER_AUTH_SECRET": "s" * 40, "POSTGRES_PASSWORD": "pw", "METRICS_TOKEN": "m" * 32}
    for name, service in replicas_of(topology).items():
        raw = {key: str(value) for key, value in service["environment"].items()}
        # No secret is written in the file: each comes from the environment.
        assert raw["BETTER_AUTH_SECRET"].startswith("${BETTER_AUTH_SECRET:?")
        assert raw["METRICS_TOKEN"].startswith("${METRICS_TOKEN")
        assert "${POSTGRES_PASSWORD:?" in raw["DATABASE_URL"]
        environ = {key: interpolate(value, secrets) for key, value in raw.items()}
        database = sa.engine.make_url(environ["DATABASE_URL"])
        assert (database.host, database.port) == ("pgbouncer", 5432), name
        assert environ["RATELIMIT_STORAGE_URI"].startswith("redis://redis:6379/")
        assert environ["TRUSTED_PROXY_COUNT"] == "1"  # nginx, and only nginx, in front
        config = load_config("production", environ=environ)
        check_server_processes(config, 8)  # several workers: the counters are shared
        with pytest.raises(KeyError):
            interpolate(raw["BETTER_AUTH_SECRET"], {})  # compose refuses to start without it
    pgbouncer = topology["pgbouncer"]["environment"]
    assert pgbouncer["POOL_MODE"] == "transaction" and pgbouncer["DB_HOST"] == "db"
    assert str(pgbouncer["DB_PASSWORD"]).startswith("${POSTGRES_PASSWORD:?")
    assert str(topology["db"]["environment"]["POSTGRES_PASSWORD"]).startswith("${POSTGRES_PASSWORD:?")
    # Migrations go to the server directly, not through the transaction pooler.
    migrate = topology["migrate"]
    assert migrate["entrypoint"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    direct = sa.engine.make_url(interpolate(migrate["environment"]["DATABASE_URL"], secrets))
    assert direct.host == "db"
