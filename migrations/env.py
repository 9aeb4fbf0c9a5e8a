"""Alembic environment, run by `flask db upgrade` (flask-migrate).

Migrations get their own short-lived engine rather than the app's pool: no statement
timeout (building an index can take longer than a request may), no pooling, and optionally
a different URL (`MIGRATION_DATABASE_URL`, e.g. Neon's direct endpoint when the app uses
the `-pooler` one, since DDL and advisory locks want a real session).
"""

import logging
import os
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import create_engine, pool

from config import normalize_database_url

config = context.config
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = current_app.extensions["migrate"].db.metadata


def database_url() -> str:
    override = os.environ.get("MIGRATION_DATABASE_URL", "").strip()
    if override:
        return normalize_database_url(override)
    return current_app.config["SQLALCHEMY_DATABASE_URI"]


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def skip_empty_autogenerate(context, revision, directives):  # type: ignore[no-untyped-def]
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logging.getLogger("alembic.env").info("No changes in schema detected.")

    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        options = {
            "render_as_batch": connection.dialect.name == "sqlite",
            "compare_type": True,
            "process_revision_directives": skip_empty_autogenerate,
            **current_app.extensions["migrate"].configure_args,
        }
        context.configure(connection=connection, target_metadata=target_metadata, **options)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
