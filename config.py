"""Settings read from the environment for the three ways the service runs.

`load_config()` returns a plain dict that `create_app()` loads into `app.config`.
Nothing is read at import time, so tests can build apps with any settings.

- development: `.env` is read (the process environment wins), SQLite by default,
  a random signing secret is generated once and kept under `instance/`.
- testing: like development, without `.env`; tests pass their own settings.
- production (the default, what gunicorn and Docker run): refuses insecure settings
  with a one-line reason instead of starting.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_INSTANCE_PATH = PROJECT_ROOT / "instance"
ENVIRONMENTS = ("development", "testing", "production")
MIN_SECRET_BYTES = 32
# RFC 6750's b64token: what a client can send as `Authorization: Bearer <token>` unchanged.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class ConfigError(RuntimeError):
    """A setting is missing, malformed or unsafe; the message names it in one line."""


def normalize_database_url(url: str) -> str:
    """Return a SQLAlchemy URL that uses psycopg2 for PostgreSQL.

    Neon's console hands out `postgres://` or `postgresql://` URLs; SQLAlchemy 2.1 maps
    the latter to psycopg 3, which is not installed. Query parameters such as
    `sslmode=require&channel_binding=require` are kept as given.
    """
    try:
        parsed = make_url(url.strip())
    except ArgumentError as error:
        raise ConfigError("DATABASE_URL is not a valid database URL") from error
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def _int_setting(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool_setting(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _list_setting(environ: Mapping[str, str], name: str, default: str = "") -> list[str]:
    raw = environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _metrics_token(environ: Mapping[str, str]) -> str:
    """`METRICS_TOKEN`: the bearer token `/metrics` asks for; empty (no `/metrics`) if unset."""
    token = environ.get("METRICS_TOKEN", "").strip()
    if token and not BEARER_TOKEN.fullmatch(token):
        raise ConfigError(
            "METRICS_TOKEN must be a bearer token: letters, digits and - . _ ~ + /,"
            " optionally ending in ="
        )
    return token


def _development_secret(instance_path: Path) -> str:
    """A random secret generated once per checkout, so `flask token create` and the server agree."""
    secret_file = instance_path / "dev-secret"
    if secret_file.exists():
        return secret_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    return secret


def _json_text(value: Any) -> str:
    # JSON columns (tasks.tag_names) keep non-ASCII text as it is, not as \u escapes:
    # PostgreSQL copies the stored text into list pages verbatim.
    return orjson.dumps(value).decode()


def _engine_options(database_url: str, environ: Mapping[str, str]) -> dict[str, Any]:
    if make_url(database_url).get_backend_name() == "sqlite":
        # `timeout` is SQLite's busy wait: concurrent writers queue instead of failing.
        return {"connect_args": {"timeout": 15}, "json_serializer": _json_text}
    return {
        "json_serializer": _json_text,
        # Not `pool_pre_ping`: todo/data/connection_check.py checks each checkout, with a ping only
        # for connections idle longer than DB_PING_AFTER_IDLE_SECONDS.
        "pool_pre_ping": False,
        "pool_size": _int_setting(environ, "DB_POOL_SIZE", 5, minimum=1),
        "max_overflow": _int_setting(environ, "DB_MAX_OVERFLOW", 10),
        "pool_recycle": _int_setting(environ, "DB_POOL_RECYCLE", 300, minimum=1),
        "pool_timeout": _int_setting(environ, "DB_POOL_TIMEOUT", 5, minimum=1),
        "connect_args": {
            # libpq's own timeout: an unreachable host fails fast instead of hanging a worker.
            "connect_timeout": _int_setting(environ, "DB_CONNECT_TIMEOUT", 3, minimum=1),
            "application_name": environ.get("DB_APPLICATION_NAME", "todo-api"),
        },
    }


def _check_production(config: Mapping[str, Any]) -> None:
    secret: str = config["BETTER_AUTH_SECRET"]
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"BETTER_AUTH_SECRET is shorter than {MIN_SECRET_BYTES} bytes; refusing to start"
        )
    if not secret and not config["JWT_JWKS_URL"]:
        raise ConfigError(
            "set BETTER_AUTH_SECRET (at least 32 bytes) or JWT_JWKS_URL; refusing to start"
            " with no way to verify tokens"
        )
    metrics_token: str = config["METRICS_TOKEN"]
    if metrics_token and len(metrics_token.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"METRICS_TOKEN is shorter than {MIN_SECRET_BYTES} bytes; refusing to start"
        )


def _check_idempotency(config: Mapping[str, Any]) -> None:
    """An in-flight claim may be retaken once it is older than any request can run: its
    statement timeout, at the least (a write sends up to three statements, each with the
    timeout), and within the key's time to live."""
    abandoned: int = config["IDEMPOTENCY_ABANDONED_AFTER_SECONDS"]
    statement_timeout_seconds = config["DB_STATEMENT_TIMEOUT_MS"] / 1000
    if abandoned <= statement_timeout_seconds:
        raise ConfigError(
            f"IDEMPOTENCY_ABANDONED_AFTER_SECONDS must be longer than a request can run, so"
            f" more than DB_STATEMENT_TIMEOUT_MS ({statement_timeout_seconds:g} s); got {abandoned}"
        )
    if abandoned >= config["IDEMPOTENCY_TTL_HOURS"] * 3600:
        raise ConfigError(
            "IDEMPOTENCY_ABANDONED_AFTER_SECONDS must be shorter than IDEMPOTENCY_TTL_HOURS;"
            f" got {abandoned} s and {config['IDEMPOTENCY_TTL_HOURS']} h"
        )


def check_server_processes(config: Mapping[str, Any], processes: int) -> None:
    """Refuse, in production, settings that only hold within one process when `processes`
    serve the app (gunicorn's workers). Called by gunicorn.conf.py before any worker starts."""
    per_process_limits = (
        config["RATELIMIT_ENABLED"]
        and config["RATELIMIT_STORAGE_URI"].startswith("memory://")
        and not config["RATELIMIT_ALLOW_PER_PROCESS"]
    )
    if config["APP_ENV"] == "production" and processes > 1 and per_process_limits:
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI is memory:// with {processes} workers, so each would count"
            f" on its own and let every user through {processes} times the limit; set"
            " RATELIMIT_STORAGE_URI=redis://... (or RATELIMIT_ALLOW_PER_PROCESS=true);"
            " refusing to start"
        )


def load_config(
    environment: str | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: Path = DEFAULT_INSTANCE_PATH,
) -> dict[str, Any]:
    """Build the Flask settings for `environment` (default: `APP_ENV`, else production)."""
    process_environ: Mapping[str, str] = os.environ if environ is None else environ
    name = (environment or process_environ.get("APP_ENV") or "production").strip().lower()
    if name not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {name!r}")

    env: dict[str, str] = {}
    if name == "development":
        dotenv_file = PROJECT_ROOT / ".env"
        if dotenv_file.exists():
            env.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    env.update(process_environ)

    raw_database_url = env.get("DATABASE_URL", "").strip()
    if raw_database_url:
        database_url = normalize_database_url(raw_database_url)
    else:
        instance_path.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{instance_path / 'todo.db'}"

    secret = env.get("BETTER_AUTH_SECRET", "").strip()
    if not secret and name == "development":
        secret = _development_secret(instance_path)

    default_origins = "http://localhost:3000" if name == "development" else ""
    allowed_origins = _list_setting(env, "ALLOWED_ORIGINS", default_origins)
    if any("*" in origin for origin in allowed_origins):
        raise ConfigError("ALLOWED_ORIGINS must list exact origins; a wildcard is refused")

    config: dict[str, Any] = {
        "APP_ENV": name,
        "TESTING": name == "testing",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url, env),
        "DB_STATEMENT_TIMEOUT_MS": _int_setting(env, "DB_STATEMENT_TIMEOUT_MS", 5000, minimum=1),
        "DB_SEARCH_TIMEOUT_MS": _int_setting(env, "DB_SEARCH_TIMEOUT_MS", 1000, minimum=1),
        "SYNC_TOMBSTONE_DAYS": _int_setting(env, "SYNC_TOMBSTONE_DAYS", 30, minimum=1),
        "DB_RETRY_AFTER_SECONDS": _int_setting(env, "DB_RETRY_AFTER_SECONDS", 5, minimum=1),
        "DB_PING_AFTER_IDLE_SECONDS": _int_setting(env, "DB_PING_AFTER_IDLE_SECONDS", 10),
        "BETTER_AUTH_SECRET": secret,
        "JWT_JWKS_URL": env.get("JWT_JWKS_URL", "").strip(),
        "JWT_ISSUER": env.get("JWT_ISSUER", "").strip(),
        "JWT_AUDIENCE": env.get("JWT_AUDIENCE", "").strip(),
        "JWT_LEEWAY_SECONDS": _int_setting(env, "JWT_LEEWAY_SECONDS", 30),
        "JWT_JWKS_CACHE_SECONDS": _int_setting(env, "JWT_JWKS_CACHE_SECONDS", 300, minimum=1),
        "ALLOWED_ORIGINS": allowed_origins,
        "MAX_CONTENT_LENGTH": _int_setting(env, "MAX_CONTENT_LENGTH", 64 * 1024, minimum=1024),
        "MAX_TASKS_PER_USER": _int_setting(env, "MAX_TASKS_PER_USER", 10_000, minimum=1),
        "MAX_TAGS_PER_USER": _int_setting(env, "MAX_TAGS_PER_USER", 500, minimum=1),
        # Idempotent retries (todo/pipeline/idempotency.py): how long a kept response is
        # replayed, and after how long a claim still in flight counts as abandoned.
        "IDEMPOTENCY_TTL_HOURS": _int_setting(env, "IDEMPOTENCY_TTL_HOURS", 24, minimum=1),
        "IDEMPOTENCY_ABANDONED_AFTER_SECONDS": _int_setting(
            env, "IDEMPOTENCY_ABANDONED_AFTER_SECONDS", 60, minimum=1
        ),
        "RATELIMIT_ENABLED": env.get("RATELIMIT_ENABLED", "true").strip().lower() != "false",
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://").strip(),
        "RATELIMIT_ALLOW_PER_PROCESS": _bool_setting(env, "RATELIMIT_ALLOW_PER_PROCESS", False),
        # Not flask-limiter's own RATELIMIT_DEFAULT: these are shared by all endpoints.
        "RATELIMIT_PER_USER": env.get("RATELIMIT_PER_USER", "600 per minute").strip(),
        "RATELIMIT_WRITES_PER_USER": env.get("RATELIMIT_WRITES_PER_USER", "120 per minute")
        .strip(),
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", "todo-api").strip(),
        "METRICS_TOKEN": _metrics_token(env),
        # Proxies in front that append the client's address to X-Forwarded-For (nginx: 1).
        "TRUSTED_PROXY_COUNT": _int_setting(env, "TRUSTED_PROXY_COUNT", 0),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").strip().upper(),
        "LOG_FORMAT": env.get("LOG_FORMAT", "text" if name == "development" else "json")
        .strip()
        .lower(),
    }
    _check_idempotency(config)
    if name == "production":
        try:
            _check_production(config)
        except ConfigError as error:
            if environment or process_environ.get("APP_ENV"):
                raise
            # Production only by default: say so, for whoever ran this to try it out.
            raise ConfigError(
                f"{error} (APP_ENV is not set, so production applies; to try the service,"
                " use `make run`, or run `flask` from the repository root, whose .flaskenv"
                " sets APP_ENV=development)"
            ) from None
    return config
