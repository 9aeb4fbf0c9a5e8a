"""Headers that keep browsers and caches from misreading or storing responses, on every
response."""

from __future__ import annotations

from flask import Response, request

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
# Per-user data must never be stored by a shared cache or the browser.
API = [*COMMON, ("Content-Security-Policy", API_CSP), ("Cache-Control", "no-store")]
DOCS = [*COMMON, ("Content-Security-Policy", DOCS_CSP)]
OTHER = [*COMMON, ("Content-Security-Policy", API_CSP)]


def add_security_headers(response: Response) -> Response:
    path = request.path
    if path.startswith(("/api/", "/health")):
        extra = API
    elif path == "/docs" or path.startswith("/docs/"):
        extra = DOCS
    else:
        extra = OTHER
    headers = response.headers
    headers.extend(extra)  # appended: no view sets these, so no lookups are needed
    # CORS headers depend on the Origin (flask-cors only says so when several origins are
    # configured), so shared caches must keep responses apart by it.
    if "Vary" not in headers:
        headers["Vary"] = "Origin"
    elif "origin" not in headers["Vary"].lower():
        headers["Vary"] = headers["Vary"] + ", Origin"
    return response

