"""Health checks for load balancers and orchestrators (public, no token)."""

from __future__ import annotations

import marshmallow as ma
from flask import Response
from marshmallow import fields, validate
from sqlalchemy import text

from todo.api.responses import json_response
from todo.api.smorest import Blueprint, documents_errors
from todo.data.database import reading

blp = Blueprint("health", __name__, description="Liveness and readiness.")


class LivenessSchema(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(("ok",)))


class ReadinessSchema(LivenessSchema):
    database = fields.String(required=True, validate=validate.OneOf(("ok",)))


@blp.route("/health")
@blp.response(200, LivenessSchema, description="The process is up (the database is not touched).")
@blp.doc(security=[], operationId="liveness")
def liveness() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@blp.route("/health/ready")
@blp.response(200, ReadinessSchema, description="The database answers.")
@blp.doc(security=[], operationId="readiness")
@documents_errors(blp, 503)
def readiness() -> Response:
    """Readiness: the database answers `SELECT 1`."""
    with reading() as reads:
        reads.scalar(text("SELECT 1"))
    return json_response({"status": "ok", "database": "ok"})
