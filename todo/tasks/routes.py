"""HTTP views of the tasks resource: load arguments, call a read or write, return JSON."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.views import MethodView
from werkzeug.routing import BaseConverter

from todo.api.conditional import (
    collection_etag,
    is_not_modified,
    not_modified,
    unchanged_collection,
)
from todo.api.openapi import (
    ETAG_HEADER,
    IF_MATCH_PARAMETER,
    USER_ID_PARAMETER,
)
from todo.api.problems import ProblemError
from todo.api.responses import json_response, no_content
from todo.api.schemas import IF_MATCH_ERROR, IF_MATCH_SYNTAX
from todo.api.smorest import Blueprint, F, documents_errors
from todo.data.change_numbers import user_version
from todo.data.database import reading
from todo.flask_app import ApiUrlMap
from todo.tasks import queries, writes
from todo.tasks.batch import Operation, apply_batch
from todo.tasks.listing import TaskListArgs, list_page
from todo.tasks.openapi import BATCH_LINKS, LOCATION_HEADER, TASK_ID_PARAMETER, TASK_LINKS
from todo.tasks.representation import TaskJSON, TaskSchema, task_etag
from todo.tasks.schemas import (
    UUID_TEXT,
    BatchResultsSchema,
    BatchSchema,
    TaskCompletionSchema,
    TaskCreateSchema,
    TaskPageSchema,
    TaskQueryArgsSchema,
    TaskStatsQueryArgsSchema,
    TaskStatsSchema,
    TaskUpdateSchema,
)
from todo.tasks.stats import TaskStatsArgs, task_stats

blp = Blueprint(
    "tasks", __name__, url_prefix="/api/<user_id>/tasks", description="A user's tasks."
)

# Paths of the tasks collection itself, at the level of a task's id: never a `task_id`.
COLLECTION_PATHS = ("stats", "batch")


class TaskIdConverter(BaseConverter):
    """The `<task_id>` path segment: any segment but a name in `COLLECTION_PATHS`. So a
    method `/tasks/stats` lacks is a 405 with `Allow` from that path, not a task that is not
    found, and `OPTIONS` lists its own methods. Every other segment reaches the task views,
    where one that is not a UUID is a 404 "Task not found." (API.md)."""

    regex = rf"(?!(?:{'|'.join(map(re.escape, COLLECTION_PATHS))})\Z)[^/]+"
    part_isolating = True  # one segment (werkzeug would infer False from the `/` above)


def _use_task_id_converter(state: BlueprintSetupState) -> None:
    """For every `<task_id>` (the rule templates stay as they are: they label the access
    log and metrics). Runs when the blueprint is registered, before its rules are added."""
    url_map = state.app.url_map
    assert isinstance(url_map, ApiUrlMap)
    url_map.converters_by_variable["task_id"] = TaskIdConverter


blp.record_once(_use_task_id_converter)


def parse_task_id(task_id: str) -> uuid.UUID:
    if not UUID_TEXT.fullmatch(task_id):  # `$` would also match before a final newline
        raise ProblemError(404, "Task not found.")
    return uuid.UUID(task_id)


def if_match_header() -> Any | None:
    """werkzeug's parsed `If-Match`, None without one; 400 for one that is not `*` or a list
    of quoted ETags (werkzeug would read it as a tag that can never match: a 412 that says
    the task changed, which it did not)."""
    value = request.headers.get("If-Match")
    if value is None:
        return None
    if not IF_MATCH_SYNTAX.fullmatch(value):
        raise ProblemError(
            400,
            "If-Match must be `*` or quoted ETags as the ETag header gives them, e.g. "
            'If-Match: "3f2a9c0e...".',
            errors={"header": {"If-Match": [IF_MATCH_ERROR]}},
        )
    return request.if_match


def task_response(
    task: TaskJSON, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return json_response(task, status, {"ETag": task_etag(task), **(headers or {})})


def reading_filtered(filters: TaskListArgs) -> reading:
    """A read of the user's tasks under the listing's filters. A search can cost far more
    than other reads (a pattern tested against every task of the user), so it gets a shorter
    time limit, DB_SEARCH_TIMEOUT_MS: the bound on what one request can cost."""
    search_timeout = current_app.config["DB_SEARCH_TIMEOUT_MS"]
    return reading(statement_timeout_ms=search_timeout if filters.search else None)


def update_operation(operation_id: str) -> Callable[[F], F]:
    """PUT and PATCH are the same partial update (API.md): the same body, answer and errors."""

    def decorate(view: F) -> F:
        view = documents_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 429, 503)(view)
        view = blp.doc(operationId=operation_id, parameters=[IF_MATCH_PARAMETER])(view)
        view = blp.response(200, TaskSchema, headers=ETAG_HEADER, links=TASK_LINKS)(view)
        return blp.arguments(TaskUpdateSchema(), required=False)(view)

    return decorate


def update(changes: dict[str, Any], user_id: str, task_id: str) -> Response:
    task = writes.update_task(user_id, parse_task_id(task_id), changes, if_match_header())
    return task_response(task)


@blp.route("", parameters=[USER_ID_PARAMETER])
class Tasks(MethodView):
    @blp.arguments(TaskQueryArgsSchema(), location="query")
    @blp.response(200, TaskPageSchema, headers=ETAG_HEADER)
    @blp.doc(operationId="listTasks")
    @documents_errors(blp, 304, 400, 401, 403, 429, 503)
    def get(self, args: TaskListArgs, user_id: str) -> Response:
        """List tasks, with search, filters, sorting and pagination."""
        with reading_filtered(args) as reads:
            if (unchanged := unchanged_collection(reads, "tasks", user_id)) is not None:
                return unchanged
            body, change_number = list_page(reads, user_id, args)
        return current_app.response_class(
            body, mimetype="application/json",
            headers={"ETag": collection_etag("tasks", change_number)},
        )

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
    @documents_errors(blp, 304, 401, 403, 404, 429, 503)
    def get(self, user_id: str, task_id: str) -> Response:
        """Get one task."""
        task_uuid = parse_task_id(task_id)
        with reading() as reads:
            task = queries.get_task(reads, user_id, task_uuid)
        if task is None:
            raise ProblemError(404, "Task not found.")
        etag = task_etag(task)
        if is_not_modified(etag):
            return not_modified(etag)
        return json_response(task, headers={"ETag": etag})

    @update_operation("putTask")
    def put(self, changes: dict[str, Any], user_id: str, task_id: str) -> Response:
        """Update a task: any subset of its fields (same as PATCH)."""
        return update(changes, user_id, task_id)

    @update_operation("patchTask")
    def patch(self, changes: dict[str, Any], user_id: str, task_id: str) -> Response:
        """Update some fields of a task."""
        return update(changes, user_id, task_id)

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


@blp.route("/batch", parameters=[USER_ID_PARAMETER])
class TaskBatch(MethodView):
    @blp.arguments(BatchSchema())
    @blp.response(200, BatchResultsSchema, links=BATCH_LINKS)
    @blp.doc(operationId="batchTasks")
    @documents_errors(blp, 400, 401, 403, 404, 409, 412, 413, 415, 429, 503)
    def post(self, operations: list[Operation], user_id: str) -> Response:
        """Apply 1-100 task operations at once: all of them, in order, or none.

        Each operation is a create, update, complete or delete, done as its own endpoint
        does it; all run in one transaction. A create's `ref` names its task for later
        operations of the same batch, which give `"$" + ref` as their `id`. The first
        operation that fails fails the batch with its own status (404, 409, 412) and
        `errors.operations` naming it by index; an invalid body is 400 naming each invalid
        operation the same way. Limits count as if the operations had been sent one by one;
        the rate limit counts the batch as one write."""
        return json_response({"results": apply_batch(user_id, operations)})


# `/stats` is a path of its own, never a task id (`TaskIdConverter`).
@blp.route("/stats", parameters=[USER_ID_PARAMETER])
class TaskStatistics(MethodView):
    @blp.arguments(TaskStatsQueryArgsSchema(), location="query")
    @blp.response(200, TaskStatsSchema, headers=ETAG_HEADER)
    @blp.doc(operationId="taskStats")
    @documents_errors(blp, 304, 400, 401, 403, 429, 503)
    def get(self, args: TaskStatsArgs, user_id: str) -> Response:
        """Count the tasks matching the listing's filters: pending, completed, overdue,
        due today, and pending by priority."""
        today = args.today or datetime.now(UTC).date()
        with reading_filtered(args.filters) as reads:
            # Versioned by the user's change number and `today` too: by default the UTC
            # date, which changes at midnight with no write.
            etag = collection_etag(f"stats.{today.isoformat()}",
                                   user_version(reads, user_id).change_number)
            if is_not_modified(etag):
                return not_modified(etag)
            counts = task_stats(reads, user_id, args.filters, today)
        return json_response(counts, headers={"ETag": etag})
