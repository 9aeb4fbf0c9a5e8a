"""Health checks for load balancers and orchestrators (public, no token)."""

from __future__ import annotations

from flask import Response
from sqlalchemy import text

from todo.api import Blueprint, documents_errors
from todo.extensions import db
from todo.responses import json_response

blp = Blueprint("health", __name__, description="Liveness and readiness.")


@blp.route("/health")
@blp.response(200, description="The process is up (the database is not touched).")
@blp.doc(security=[])
def liveness() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@blp.route("/health/ready")
@blp.response(200, description="The database answers.")
@blp.doc(security=[])
@documents_errors(blp, 503)
def readiness() -> Response:
    """Readiness: the database answers `SELECT 1`."""
    db.session.execute(text("SELECT 1"))
    return json_response({"status": "ok", "database": "ok"})
