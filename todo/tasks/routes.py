"""HTTP views of the tasks resource: load arguments, call a read or write, return JSON."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Response, current_app, request, url_for
from flask.views import MethodView

from todo.api.problems import ProblemError
from todo.api.responses import json_response, no_content
from todo.api.smorest import Blueprint, documents_errors
from todo.data.database import reading
from todo.tasks import queries, writes
from todo.tasks.listing import TaskListArgs, list_page
from todo.tasks.representation import TaskJSON, task_etag
from todo.tasks.schemas import (
    TaskCompletionSchema,
    TaskCreateSchema,
    TaskPageSchema,
    TaskQueryArgsSchema,
    TaskSchema,
    TaskUpdateSchema,
)

blp = Blueprint(
    "tasks", __name__, url_prefix="/api/<user_id>/tasks", description="A user's tasks."
)

USER_ID_PARAMETER = {
    "in": "path",
    "name": "user_id",
    "required": True,
    "description": "The Better Auth user id; must equal the token's `sub`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
TASK_ID_PARAMETER = {
    "in": "path",
    "name": "task_id",
    "required": True,
    "description": "The task's UUID. Anything else is 404.",
    "schema": {"type": "string", "format": "uuid"},
}
ETAG_HEADER = {
    "ETag": {
        "description": "Strong validator of this representation; send it back in `If-Match`.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[^"]+"$'},
    }
}
LOCATION_HEADER = {
    "Location": {
        "description": "URL of the new task.",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    }
}
IF_MATCH_PARAMETER = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "Apply the write only if the task's current ETag matches (else 412); `*` "
    "matches any existing task.",
    "schema": {"type": "string"},
    "example": "*",
}
UUID_TEXT = re.compile(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", re.IGNORECASE)
# Links from every response that carries a task to the operations on that task, so a client
# (and schemathesis' stateful phase) can chain create -> get -> update -> complete -> delete.
TASK_PARAMETERS = {"user_id": "$request.path.user_id", "task_id": "$response.body#/id"}
CONDITIONAL_TASK_PARAMETERS = {**TASK_PARAMETERS, "If-Match": "$response.header.ETag"}
TASK_LINKS = {
    "GetTask": {
        "operationId": "getTask",
        "parameters": TASK_PARAMETERS,
        "description": "Read this task.",
    },
    "PutTask": {
        "operationId": "putTask",
        "parameters": CONDITIONAL_TASK_PARAMETERS,
        "description": "Update this task unless it has changed since this response.",
    },
    "PatchTask": {
        "operationId": "patchTask",
        "parameters": CONDITIONAL_TASK_PARAMETERS,
        "description": "Update this task unless it has changed since this response.",
    },
    "CompleteTask": {
        "operationId": "completeTask",
        "parameters": TASK_PARAMETERS,
        "description": "Toggle or set this task's `completed`.",
    },
    "DeleteTask": {
        "operationId": "deleteTask",
        "parameters": CONDITIONAL_TASK_PARAMETERS,
        "description": "Delete this task unless it has changed since this response.",
    },
}


def parse_task_id(task_id: str) -> uuid.UUID:
    if not UUID_TEXT.fullmatch(task_id):  # `$` would also match before a final newline
        raise ProblemError(404, "Task not found.")
    return uuid.UUID(task_id)


def if_match_header() -> Any | None:
    return request.if_match if "If-Match" in request.headers else None


def task_response(
    task: TaskJSON, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return json_response(task, status, {"ETag": task_etag(task), **(headers or {})})


@blp.route("", parameters=[USER_ID_PARAMETER])
class Tasks(MethodView):
    @blp.arguments(TaskQueryArgsSchema(), location="query")
    @blp.response(200, TaskPageSchema)
    @blp.doc(operationId="listTasks")
    @documents_errors(blp, 400, 401, 403, 429, 503)
    def get(self, args: TaskListArgs, user_id: str) -> Response:
        """List tasks, with search, filters, sorting and pagination."""
        # A search can cost far more than other reads (a pattern tested against every task of
        # the user), so it gets a shorter time limit: the bound on what one request can cost.
        timeout = current_app.config["DB_SEARCH_TIMEOUT_MS"] if args.search else None
        with reading(statement_timeout_ms=timeout) as reads:
            body = list_page(reads, user_id, args)
        return current_app.response_class(body, mimetype="application/json")

    @blp.arguments(TaskCreateSchema())
    @blp.response(
        201, TaskSchema, headers={**LOCATION_HEADER, **ETAG_HEADER}, links=TASK_LINKS
    )
    @blp.doc(operationId="createTask")
    @documents_errors(blp, 400, 401, 403, 409, 413, 415, 429, 503)
    def post(self, fields: dict[str, Any], user_id: str) -> Response:
        """Create a task."""
        task = writes.create_task(user_id, fields)
        location = url_for("tasks.TaskById", user_id=user_id, task_id=task["id"])
        return task_response(task, 201, {"Location": location})


@blp.route("/<task_id>", parameters=[USER_ID_PARAMETER, TASK_ID_PARAMETER])
class TaskById(MethodView):
    @blp.response(200, TaskSchema, headers=ETAG_HEADER, links=TASK_LINKS)
    @blp.doc(operationId="getTask")
    @documents_errors(blp, 401, 403, 404, 429, 503)
    def get(self, user_id: str, task_id: str) -> Response:
        """Get one task."""
        task_uuid = parse_task_id(task_id)
        with reading() as reads:
            task = queries.get_task(reads, user_id, task_uuid)
        if task is None:
            raise ProblemError(404, "Task not found.")
        return task_response(task)

    @blp.arguments(TaskUpdateSchema(), required=False)
    @blp.response(200, TaskSchema, headers=ETAG_HEADER, links=TASK_LINKS)
    @blp.doc(operationId="putTask", parameters=[IF_MATCH_PARAMETER])
    @documents_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 429, 503)
    def put(self, changes: dict[str, Any], user_id: str, task_id: str) -> Response:
        """Update a task: any subset of its fields (same as PATCH)."""
        task = writes.update_task(user_id, parse_task_id(task_id), changes, if_match_header())
        return task_response(task)

    @blp.arguments(TaskUpdateSchema(), required=False)
    @blp.response(200, TaskSchema, headers=ETAG_HEADER, links=TASK_LINKS)
    @blp.doc(operationId="patchTask", parameters=[IF_MATCH_PARAMETER])
    @documents_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 429, 503)
    def patch(self, changes: dict[str, Any], user_id: str, task_id: str) -> Response:
        """Update some fields of a task."""
        task = writes.update_task(user_id, parse_task_id(task_id), changes, if_match_header())
        return task_response(task)

    @blp.response(204)
    @blp.doc(operationId="deleteTask", parameters=[IF_MATCH_PARAMETER])
    @documents_errors(blp, 401, 403, 404, 412, 429, 503)
    def delete(self, user_id: str, task_id: str) -> Response:
        """Delete a task."""
        writes.delete_task(user_id, parse_task_id(task_id), if_match_header())
        return no_content()


@blp.route("/<task_id>/complete", parameters=[USER_ID_PARAMETER, TASK_ID_PARAMETER])
class TaskCompletion(MethodView):
    @blp.arguments(TaskCompletionSchema(), required=False)
    @blp.response(200, TaskSchema, headers=ETAG_HEADER, links=TASK_LINKS)
    @blp.doc(operationId="completeTask")
    @documents_errors(blp, 400, 401, 403, 404, 413, 415, 429, 503)
    def patch(self, body: dict[str, Any], user_id: str, task_id: str) -> Response:
        """Toggle `completed`, or set it with `{"completed": true|false}`."""
        task = writes.set_completion(user_id, parse_task_id(task_id), body.get("completed"))
        return task_response(task)
