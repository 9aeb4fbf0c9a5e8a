"""Swagger UI at `/docs`, served entirely from this service (no CDN).

The assets come from the `flask-swagger-ui` wheel (Swagger UI 5, which reads OpenAPI 3.1).
Its own page uses an inline script, which a strict Content-Security-Policy forbids, so we
serve our own page and start-up script instead.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, send_from_directory, url_for

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
    return send_from_directory(STATIC_DIR, "swagger-initializer.js", max_age=300)


@blp.get("/assets/<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI_DIST, filename, max_age=86400)
