"""OpenAPI pieces of the tasks resource: the task id, the new task's location, and the links
from every response that carries a task to the operations on it."""

from __future__ import annotations

from typing import Any

TASK_ID_PARAMETER: dict[str, Any] = {
    "in": "path",
    "name": "task_id",
    "required": True,
    "description": "The task's UUID. Anything else is 404.",
    "schema": {"type": "string", "format": "uuid"},
}
LOCATION_HEADER: dict[str, Any] = {
    "Location": {
        "description": "URL of the new task.",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    }
}
# Links from every response that carries a task to the operations on that task, so a client
# (and schemathesis' stateful phase) can chain create -> get -> update -> complete -> delete.
TASK_PARAMETERS = {"user_id": "$request.path.user_id", "task_id": "$response.body#/id"}
CONDITIONAL_TASK_PARAMETERS = {**TASK_PARAMETERS, "If-Match": "$response.header.ETag"}
TASK_LINKS: dict[str, Any] = {
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


# From a batch's answer to the task of its first operation (JSON pointers name one index).
BATCH_LINKS: dict[str, Any] = {
    "GetTask": {
        "operationId": "getTask",
        "parameters": {"user_id": "$request.path.user_id",
                       "task_id": "$response.body#/results/0/id"},
        "description": "Read the task of the batch's first operation.",
    },
    "ListChanges": {
        "operationId": "listChanges",
        "parameters": {"user_id": "$request.path.user_id"},
        "description": "What changed in the user's tasks, the batch's changes among them.",
    },
}
