"""`flask` commands: `token create` (a token like the frontend sends, for trying the API)."""

from __future__ import annotations

import time

import click
import jwt
from flask import Flask, current_app
from flask.cli import AppGroup

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


def init_app(app: Flask) -> None:
    app.cli.add_command(token_cli)
