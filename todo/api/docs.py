"""Swagger UI at `/docs`, served entirely from this service (no CDN).

The assets come from the `flask-swagger-ui` wheel (Swagger UI 5, which reads OpenAPI 3.1).
Its own page uses an inline script, which a strict Content-Security-Policy forbids, so we
serve our own page and start-up script instead.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, send_from_directory, url_for

from todo.api.problems import problem_response

SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
STATIC_DIR = Path(__file__).resolve().parent / "static"

blp = Blueprint("docs", __name__, url_prefix="/docs")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>todo-api docs</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec}"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


@blp.get("")
def swagger_ui() -> Response:
    def asset(name: str) -> str:
        return url_for("docs.swagger_ui_asset", filename=name)

    html = PAGE.format(
        css=asset("swagger-ui.css"),
        icon=asset("favicon-32x32.png"),
        bundle=asset("swagger-ui-bundle.js"),
        init=url_for("docs.swagger_initializer"),
        spec=url_for("api-docs.openapi_json"),
    )
    return Response(html, mimetype="text/html")


@blp.get("/swagger-initializer.js")
def swagger_initializer() -> Response:
    return static_file(STATIC_DIR, "swagger-initializer.js", max_age=300)


@blp.get("/assets/<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    return static_file(SWAGGER_UI_DIST, filename, max_age=86400)


def static_file(directory: Path, filename: str, max_age: int) -> Response:
    """The file, or a problem when the request's conditions fail: werkzeug answers a
    non-matching `If-Match` with status 412 on the file's own response."""
    response = send_from_directory(directory, filename, max_age=max_age)
    if response.status_code < 400:
        return response
    response.close()
    return problem_response(response.status_code, "The file does not match If-Match.")
