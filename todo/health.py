"""Health checks for load balancers and orchestrators (public, no token). The views return
data; flask-smorest serialises it with the documented schema."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate
from sqlalchemy import text

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
def liveness() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@blp.route("/health/ready")
@blp.response(200, ReadinessSchema, description="The database answers.")
@blp.doc(security=[], operationId="readiness")
@documents_errors(blp, 503)
def readiness() -> dict[str, str]:
    """Readiness: the database answers `SELECT 1`."""
    with reading() as reads:
        reads.scalar(text("SELECT 1"))
    return {"status": "ok", "database": "ok"}
