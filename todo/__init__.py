"""todo-api: the Flask REST service behind the todo app."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import load_config
from todo import cli, errors, pipeline
from todo.data import database
from todo.extensions import api, db, migrate
from todo.flask_app import TodoFlask
from todo.pipeline import metrics

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent.parent / "migrations"
API_SPEC_OPTIONS: dict[str, Any] = {
    "info": {
        "description": "Tasks and tags of the todo app's users. Every `/api/...` call needs "
        "`Authorization: Bearer <jwt>` whose `sub` is the path's `user_id`. Errors are "
        "`application/problem+json` (RFC 7807).",
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
    },
    "security": [{"bearerAuth": []}],
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from `config` (a dict like `config.load_config()` returns; by default
    the environment's)."""
    # No app-wide static route: the docs blueprint serves the only static files.
    app = TodoFlask(__name__, instance_relative_config=True, static_folder=None)
    app.config.update(load_config() if config is None else config)
    app.config.update(
        API_TITLE="todo-api",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS=API_SPEC_OPTIONS,
    )

    if app.config["TRUSTED_PROXY_COUNT"]:
        # Behind a load balancer every request comes from its address: the client's is the
        # entry the proxies appended to X-Forwarded-For (what the rate limit keys callers
        # without a valid token by). Entries a client wrote itself come before and are ignored.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=app.config["TRUSTED_PROXY_COUNT"], x_proto=0, x_host=0,
            x_port=0, x_prefix=0,
        )

    db.init_app(app)
    database.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIRECTORY))
    pipeline.install(app)  # what runs before and after every view: todo/pipeline/__init__.py
    cli.init_app(app)
    api.init_app(app)
    errors.init_app(app)  # after api.init_app, whose HTTPException handler it replaces
    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from todo import health
    from todo.account.routes import blp as account_blp
    from todo.api import docs
    from todo.changes.routes import blp as changes_blp
    from todo.tags.routes import blp as tags_blp
    from todo.tasks.routes import blp as tasks_blp

    api.register_blueprint(health.blp)
    api.register_blueprint(tasks_blp)
    api.register_blueprint(tags_blp)
    api.register_blueprint(changes_blp)
    api.register_blueprint(account_blp)
    app.register_blueprint(docs.blp)
    if metrics.enabled(app.config):
        # An operations endpoint with a token of its own: not in the OpenAPI document.
        app.register_blueprint(metrics.blp)
