"""`flask` commands beside `db upgrade`: `token create` (a token like the frontend sends),
`demo-data` (tasks to try the UI with), `check` (is this deployment ready) and `purge`
(expired sync data)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta

import click
import jwt
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

token_cli = AppGroup("token", help="Bearer tokens for trying the API by hand.")


def create_token(
    user_id: str, ttl_seconds: int, email: str | None = None, name: str | None = None
) -> str:
    """An HS256 token signed with `BETTER_AUTH_SECRET`, shaped like the frontend's."""
    config = current_app.config
    secret: str = config["BETTER_AUTH_SECRET"]
    if not secret:
        raise click.ClickException("BETTER_AUTH_SECRET is not set; no token can be signed.")
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if config["JWT_ISSUER"]:
        claims["iss"] = config["JWT_ISSUER"]
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


@token_cli.command("create")
@click.argument("user_id")
@click.option("--ttl", "ttl_seconds", default=3600, show_default=True, type=click.IntRange(1),
              help="Lifetime in seconds.")
@click.option("--email", default=None, help="Optional `email` claim.")
@click.option("--name", default=None, help="Optional `name` claim.")
def create_token_command(
    user_id: str, ttl_seconds: int, email: str | None, name: str | None
) -> None:
    """Print an HS256 token for USER_ID (paste it into Swagger's Authorize box)."""
    if not 1 <= len(user_id) <= 255:
        raise click.BadParameter("must be 1-255 characters", param_hint="USER_ID")
    click.echo(create_token(user_id, ttl_seconds, email, name))


DEMO_TASKS: list[dict[str, object]] = [
    {"title": "Renew passport", "priority": "High", "due": -3, "tags": ["admin"],
     "description": "Photos are in the top drawer."},
    {"title": "Pay electricity bill", "priority": "High", "due": 0, "tags": ["home", "bills"]},
    {"title": "Prepare quarterly report", "priority": "High", "due": 2, "tags": ["work"],
     "description": "Numbers from finance, charts from last quarter's deck."},
    {"title": "Book dentist appointment", "priority": "Medium", "due": 5, "tags": ["health"]},
    {"title": "Buy milk", "priority": "Low", "due": 1, "tags": ["errands", "home"],
     "description": "2 litres, semi-skimmed"},
    {"title": "Review pull request #42", "priority": "Medium", "due": 1, "tags": ["work"]},
    {"title": "Plan weekend hike", "priority": "Low", "due": 6, "tags": ["personal"]},
    {"title": "Call mom", "priority": "Medium", "due": None, "tags": ["family"]},
    {"title": "Clean the garage", "priority": "Low", "due": None, "tags": ["home"]},
    {"title": "Update CV", "priority": "Medium", "due": 14, "tags": ["personal", "career"]},
    {"title": "Team retrospective notes", "priority": "Low", "due": -1, "tags": ["work"],
     "completed": True},
    {"title": "Pick up dry cleaning", "priority": "Low", "due": -2, "tags": ["errands"],
     "completed": True},
    {"title": "Schedule car service", "priority": "Medium", "due": 10, "tags": ["car", "errands"]},
    {"title": "Read 'Designing Data-Intensive Applications'", "priority": "Low", "due": None,
     "tags": ["personal", "reading"]},
    {"title": "Submit expense report", "priority": "High", "due": 3, "tags": ["work", "admin"]},
]


@click.command("demo-data")
@with_appcontext
@click.argument("user_id")
@click.option("--reset", is_flag=True, help="Delete the user's tasks first.")
def demo_data_command(user_id: str, reset: bool) -> None:
    """Create a realistic set of tasks and tags for USER_ID, for trying the UI. Run again, it
    adds only the demo tasks the user does not have (by title)."""
    from todo.data.database import reading, writing
    from todo.data.models import Task
    from todo.tasks import writes

    if not 1 <= len(user_id) <= 255:
        raise click.BadParameter("must be 1-255 characters", param_hint="USER_ID")
    current, head = _migration_state()
    if current != head:
        raise click.ClickException("the database is not migrated; run `flask db upgrade`")
    if reset:
        with writing() as tx:
            writes.lock_user(tx, user_id)
            # Their tags go with their last links (a trigger: migration 0005).
            tx.execute(sa.delete(Task).where(Task.user_id == sa.bindparam("user_id")),
                       {"user_id": user_id})
    with reading() as reads:
        titles = reads.all(sa.select(Task.title).where(Task.user_id == sa.bindparam("user_id")),
                           {"user_id": user_id})
    existing = {title for (title,) in titles}
    missing = [demo for demo in DEMO_TASKS if demo["title"] not in existing]
    today = date.today()
    for demo in missing:
        due = demo["due"]
        fields = {
            "title": demo["title"],
            "description": demo.get("description"),
            "priority": demo["priority"],
            "due_date": today + timedelta(days=due) if isinstance(due, int) else None,
            "tags": demo["tags"],
        }
        task = writes.create_task(user_id, fields)
        if demo.get("completed"):
            writes.set_completion(user_id, uuid.UUID(task["id"]), True)
    message = f"Created {len(missing)} task{'' if len(missing) == 1 else 's'} for {user_id}."
    if len(missing) < len(DEMO_TASKS):
        message += (f" {len(DEMO_TASKS) - len(missing)} of the {len(DEMO_TASKS)} demo tasks were"
                    " there already; --reset deletes the user's tasks and starts afresh.")
    click.echo(message)


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Check the configuration, that the database answers and that migrations are at head."""
    config = current_app.config
    database_url = sa.engine.make_url(config["SQLALCHEMY_DATABASE_URI"])
    click.echo(f"environment: {config['APP_ENV']}")
    click.echo(f"database:    {database_url.render_as_string(hide_password=True)}")
    modes = []
    if config["BETTER_AUTH_SECRET"]:
        modes.append("HS256 shared secret")
    if config["JWT_JWKS_URL"]:
        modes.append(f"JWKS {config['JWT_JWKS_URL']}")
    click.echo(f"tokens:      {', '.join(modes) or 'none configured'}")
    if not modes:
        raise click.ClickException(
            "no way to verify tokens: set BETTER_AUTH_SECRET or JWT_JWKS_URL"
        )
    current, head = _migration_state()
    if current != head:
        raise click.ClickException(
            f"migrations are not at head (database: {current or 'empty'}, code: {head}); "
            "run `flask --app wsgi db upgrade`"
        )
    click.echo(f"migrations:  at head ({head})")
    click.echo("ok")


def purge_idempotency_keys() -> int:
    """Kept idempotent responses (and abandoned claims) older than IDEMPOTENCY_TTL_HOURS."""
    from todo.pipeline import idempotency

    return idempotency.purge_expired()


def purge_tombstones() -> int:
    """Deleted tasks' tombstones older than SYNC_TOMBSTONE_DAYS; a changes cursor older than
    the newest one purged is answered 410 from then on."""
    from todo.changes.purge import purge_tombstones as purge

    return purge(current_app.config["SYNC_TOMBSTONE_DAYS"])


# Each kind of expired sync data, with the function that deletes it and returns how many
# rows went. `flask purge` runs them all, in this order.
EXPIRED_SYNC_DATA: list[tuple[str, Callable[[], int]]] = [
    ("idempotency keys", purge_idempotency_keys),
    ("tombstones", purge_tombstones),
]


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete expired sync data: kept idempotent responses older than IDEMPOTENCY_TTL_HOURS,
    deleted tasks' tombstones older than SYNC_TOMBSTONE_DAYS.
    Requests purge a little of their own user's as they go; run this from cron (hourly, say)
    for the users who stopped sending requests."""
    current, head = _migration_state()
    if current != head:
        raise click.ClickException("the database is not migrated; run `flask db upgrade`")
    for kind, purge in EXPIRED_SYNC_DATA:
        count = purge()
        click.echo(f"{kind}: {count} expired deleted")


def _migration_state() -> tuple[str | None, str | None]:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from flask_migrate import Migrate

    from todo.extensions import db

    migrate: Migrate = current_app.extensions["migrate"]
    head = ScriptDirectory(migrate.directory).get_current_head()
    try:
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except sa.exc.SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise click.ClickException(f"the database does not answer: {reason}") from None
    return current, head


def init_app(app: Flask) -> None:
    app.cli.add_command(token_cli)
    app.cli.add_command(demo_data_command)
    app.cli.add_command(check_command)
    app.cli.add_command(purge_command)
