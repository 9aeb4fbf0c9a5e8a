"""Headers that keep browsers and caches from misreading or storing responses, on every response."""

from __future__ import annotations

from flask import Flask, Response, request

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if request.path == "/docs" or request.path.startswith("/docs/"):
        headers.setdefault("Content-Security-Policy", DOCS_CSP)
    else:
        headers.setdefault("Content-Security-Policy", API_CSP)
    # CORS headers depend on the Origin (flask-cors only says so when several origins are
    # configured), so shared caches must keep responses apart by it.
    response.vary.add("Origin")
    if request.path.startswith("/api/") or request.path.startswith("/health"):
        # Per-user data must never be stored by a shared cache or the browser.
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
