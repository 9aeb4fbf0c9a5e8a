"""Settings from the environment: database URLs, pools, and refusals in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from config import ConfigError, check_server_processes, load_config, normalize_database_url

STRONG_SECRET = "s" * 32


@pytest.mark.parametrize(
    "given, expected",
    [
        (
            "postgresql://alex:AbC123@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname"
            "?sslmode=require&channel_binding=require",
            "postgresql+psycopg2://alex:AbC123@ep-cool-darkness-123456.us-east-2.aws.neon.tech/"
            "dbname?sslmode=require&channel_binding=require",
        ),
        (
            "postgres://alex:AbC123@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/db"
            "?sslmode=require",
            "postgresql+psycopg2://alex:AbC123@ep-cool-darkness-123456-pooler.us-east-2.aws.neon."
            "tech/db?sslmode=require",
        ),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://u:p%40ss@h:5433/db", "postgresql+psycopg2://u:p%40ss@h:5433/db"),
    ],
)
def test_database_urls_are_normalised_to_psycopg2(given, expected):
    result, wanted = make_url(normalize_database_url(given)), make_url(expected)
    assert result.drivername == "postgresql+psycopg2" or result.drivername == "sqlite"
    assert result == wanted  # same driver, credentials, host, database and query parameters


def test_invalid_database_url_is_refused():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_config("testing", environ={"DATABASE_URL": "not a url"})


def test_without_database_url_sqlite_under_instance(tmp_path: Path):
    config = load_config("testing", environ={}, instance_path=tmp_path)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'todo.db'}"


def test_postgres_pool_settings_from_environment():
    config = load_config(
        "testing",
        environ={
            "DATABASE_URL": "postgresql://u@h/db",
            "DB_POOL_SIZE": "7",
            "DB_MAX_OVERFLOW": "3",
            "DB_POOL_RECYCLE": "120",
        },
    )
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_pre_ping"] is False  # todo/data/connection_check.py checks instead
    assert config["DB_PING_AFTER_IDLE_SECONDS"] == 10
    assert (options["pool_size"], options["max_overflow"], options["pool_recycle"]) == (7, 3, 120)
    assert options["connect_args"]["connect_timeout"] == 3


def test_pool_defaults():
    options = load_config("testing", environ={"DATABASE_URL": "postgresql://u@h/db"})[
        "SQLALCHEMY_ENGINE_OPTIONS"
    ]
    assert (options["pool_size"], options["max_overflow"], options["pool_recycle"]) == (5, 10, 300)


@pytest.mark.parametrize("name, value", [("DB_POOL_SIZE", "many"), ("DB_POOL_SIZE", "0"),
                                         ("JWT_LEEWAY_SECONDS", "-1")])
def test_malformed_numbers_are_refused_by_name(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config("testing", environ={name: value, "DATABASE_URL": "postgresql://u@h/db"})


def test_idempotency_defaults():
    config = load_config("testing", environ={"DATABASE_URL": "postgresql://u@h/db"})
    assert config["IDEMPOTENCY_TTL_HOURS"] == 24
    assert config["IDEMPOTENCY_ABANDONED_AFTER_SECONDS"] == 60


@pytest.mark.parametrize("environ, message", [
    ({"IDEMPOTENCY_TTL_HOURS": "0"}, "IDEMPOTENCY_TTL_HOURS must be at least 1"),
    ({"IDEMPOTENCY_TTL_HOURS": "a day"}, "IDEMPOTENCY_TTL_HOURS must be an integer"),
    # Not longer than a request can run: a live request's key could be taken over.
    ({"IDEMPOTENCY_ABANDONED_AFTER_SECONDS": "5"}, "more than DB_STATEMENT_TIMEOUT_MS"),
    ({"IDEMPOTENCY_ABANDONED_AFTER_SECONDS": "30", "DB_STATEMENT_TIMEOUT_MS": "30000"},
     "IDEMPOTENCY_ABANDONED_AFTER_SECONDS must be longer than a request can run"),
    ({"IDEMPOTENCY_ABANDONED_AFTER_SECONDS": "3600", "IDEMPOTENCY_TTL_HOURS": "1"},
     "shorter than IDEMPOTENCY_TTL_HOURS"),
])
def test_idempotency_settings_are_checked(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config("testing", environ={"DATABASE_URL": "postgresql://u@h/db", **environ})


class TestProduction:
    def base(self, **environ: str) -> dict[str, str]:
        return {"DATABASE_URL": "postgresql://u@h/db", **environ}

    def test_refuses_without_secret_or_jwks(self):
        with pytest.raises(ConfigError, match="BETTER_AUTH_SECRET .* or JWT_JWKS_URL"):
            load_config("production", environ=self.base())

    def test_refuses_a_short_secret(self):
        with pytest.raises(ConfigError, match="shorter than 32 bytes"):
            load_config("production", environ=self.base(BETTER_AUTH_SECRET="short"))

    def test_refuses_a_wildcard_origin(self):
        with pytest.raises(ConfigError, match="wildcard"):
            load_config(
                "production",
                environ=self.base(BETTER_AUTH_SECRET=STRONG_SECRET, ALLOWED_ORIGINS="*"),
            )

    def test_accepts_a_strong_secret(self):
        config = load_config(
            "production",
            environ=self.base(BETTER_AUTH_SECRET=STRONG_SECRET,
                              ALLOWED_ORIGINS="https://app.example.com, https://x.example.com"),
        )
        assert config["ALLOWED_ORIGINS"] == ["https://app.example.com", "https://x.example.com"]

    def test_accepts_jwks_only(self):
        config = load_config(
            "production", environ=self.base(JWT_JWKS_URL="https://app.example.com/api/auth/jwks")
        )
        assert config["BETTER_AUTH_SECRET"] == ""

    def test_is_the_default_environment(self):
        with pytest.raises(ConfigError):
            load_config(environ=self.base())

    def test_refuses_a_short_metrics_token(self):
        with pytest.raises(ConfigError, match="^METRICS_TOKEN is shorter than 32 bytes; refusing"):
            load_config("production", environ=self.base(BETTER_AUTH_SECRET=STRONG_SECRET,
                                                         METRICS_TOKEN="m" * 31))

    def test_accepts_a_long_metrics_token_or_none(self):
        environ = self.base(BETTER_AUTH_SECRET=STRONG_SECRET)
        assert load_config("production", environ=environ)["METRICS_TOKEN"] == ""
        token = "m" * 32
        config = load_config("production", environ={**environ, "METRICS_TOKEN": f" {token} "})
        assert config["METRICS_TOKEN"] == token

    def test_the_message_is_one_line(self):
        with pytest.raises(ConfigError) as error:
            load_config("production", environ=self.base())
        assert "\n" not in str(error.value)


class TestServerProcesses:
    """gunicorn.conf.py asks before starting its workers (tests/test_rate_limit.py runs it)."""

    def config(self, environment: str = "production", **environ: str) -> dict:
        return load_config(environment, environ={
            "DATABASE_URL": "postgresql://u@h/db", "BETTER_AUTH_SECRET": STRONG_SECRET, **environ,
        })

    def test_refuses_per_process_rate_limits_with_several_workers(self):
        with pytest.raises(ConfigError, match=r"memory:// with 4 workers.*4 times the limit"):
            check_server_processes(self.config(), 4)

    @pytest.mark.parametrize("environ", [
        {"RATELIMIT_STORAGE_URI": "redis://redis:6379/0"},
        {"RATELIMIT_ALLOW_PER_PROCESS": "true"},
        {"RATELIMIT_ENABLED": "false"},
    ])
    def test_accepts_shared_counters_an_explicit_opt_out_or_no_limits(self, environ):
        check_server_processes(self.config(**environ), 4)

    def test_accepts_one_process_and_other_environments(self):
        check_server_processes(self.config(), 1)
        check_server_processes(self.config("testing"), 4)

    @pytest.mark.parametrize(("raw", "value"), [("", False), ("TRUE", True), ("1", True), ("no", False)])
    def test_the_opt_out_is_a_boolean(self, raw, value):
        assert self.config(RATELIMIT_ALLOW_PER_PROCESS=raw)["RATELIMIT_ALLOW_PER_PROCESS"] is value

    def test_a_misspelt_opt_out_is_refused(self):
        with pytest.raises(ConfigError, match="RATELIMIT_ALLOW_PER_PROCESS must be true or false"):
            self.config(RATELIMIT_ALLOW_PER_PROCESS="ture")


@pytest.mark.parametrize("token", ["metrics token with spaces", "tökén-" + "x" * 32, "a=b" * 16])
def test_a_metrics_token_no_client_could_send_as_a_bearer_token_is_refused(token):
    with pytest.raises(ConfigError, match="METRICS_TOKEN must be a bearer token"):
        load_config("testing", environ={"DATABASE_URL": "postgresql://u@h/db",
                                        "METRICS_TOKEN": token})


@pytest.mark.parametrize("token", ["short", "abcDEF012-._~+/" * 3, "c2VjcmV0" * 4 + "=="])
def test_a_metrics_token_of_any_length_outside_production(token):
    config = load_config("testing", environ={"DATABASE_URL": "postgresql://u@h/db",
                                             "METRICS_TOKEN": token})
    assert config["METRICS_TOKEN"] == token


def test_development_generates_and_keeps_a_secret(tmp_path: Path):
    first = load_config("development", environ={}, instance_path=tmp_path)
    second = load_config("development", environ={}, instance_path=tmp_path)
    assert len(first["BETTER_AUTH_SECRET"]) >= 32
    assert first["BETTER_AUTH_SECRET"] == second["BETTER_AUTH_SECRET"]
    assert first["ALLOWED_ORIGINS"] == ["http://localhost:3000"]


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_config("staging", environ={})


def test_production_by_default_says_so_when_it_refuses():
    # Who runs the app without APP_ENV is told that production applied and how to try it out.
    with pytest.raises(ConfigError, match=r"APP_ENV is not set, so production applies; .*"
                       r"\.flaskenv sets APP_ENV=development\)$"):
        load_config(environ={})
    for explicit in ({"environment": "production", "environ": {}},
                     {"environ": {"APP_ENV": "production"}}):
        with pytest.raises(ConfigError) as refused:
            load_config(**explicit)
        assert "APP_ENV" not in str(refused.value)
