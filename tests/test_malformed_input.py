"""No input of any kind is a 500 (issue 12): property tests with hypothesis.

- random bytes in every path segment, query parameter name and value, header and body, on
  every route and method, most of them with a valid token so they get past authentication;
- tokens whose header and payload hold any JSON, signed with the real secret or not.

Every answer is below 500, every error is a problem+json, and nothing redirects. The WSGI
environ is filled in directly, so values reach the app as a server would hand them over
(a path and headers decoded as Latin-1 bytes, a raw query string), including what werkzeug's
test client would refuse to build. `FUZZ_EXAMPLES=5000` runs more examples than the 200 a
test runs by default.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import SECRET, bearer, new_task

USER = "fuzz-user"
TASK = "{task}"  # replaced by a real task's id
ROUTES = [
    ("api", USER, "tasks"),
    ("api", USER, "tasks", TASK),
    ("api", USER, "tasks", TASK, "complete"),
    ("api", USER, "tags"),
    ("api", USER, "tasks", "stats"),
    ("api", USER, "export"),
    ("health",),
    ("health", "ready"),
    ("openapi.json",),
    ("docs",),
    ("docs", "assets", "swagger-ui.css"),
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
PARAMETERS = [
    "search", "status", "priority", "tags", "tags[]", "tag_mode", "due_from", "due_to",
    "sort_by", "sort_direction", "limit", "offset", "q", "today",
]
HEADERS = [
    "Authorization", "Content-Type", "If-Match", "If-None-Match", "X-Request-ID", "Origin",
    "Access-Control-Request-Method", "Access-Control-Request-Headers", "Accept", "Cookie",
    "Idempotency-Key", "X-Forwarded-For", "Transfer-Encoding", "Range",
]
PROBLEM = "application/problem+json"
SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,
    # One app and database serve all examples of a test; what they write does not matter.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Bytes that parsers treat specially (line ends, NUL, separators, escapes, a UTF-8 letter,
# an unpaired surrogate's encoding, bytes that are not UTF-8), alone or strung together, and
# arbitrary bytes.
SPECIAL = [b"\n", b"\r\n", b"\x00", b" ", b"\t", b"%", b"%00", b"/", b"?", b"#", b";", b"\\",
           b"\xc3\xa9", b"\xed\xa0\x80", b"\xff", b"\xd9\xa5"]
raw_bytes = st.one_of(
    st.sampled_from(SPECIAL),
    st.lists(st.sampled_from(SPECIAL), min_size=2, max_size=4).map(b"".join),
    st.binary(max_size=48),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**30), 10**30)
    | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def latin1(data: bytes) -> str:
    """Bytes as a WSGI server hands them to the app."""
    return data.decode("latin-1")


def mutated(segment: str) -> st.SearchStrategy[str]:
    """The segment replaced by bytes, with bytes after or before it, or empty."""
    noise = raw_bytes.map(latin1)
    return st.one_of(
        noise.map(lambda extra: segment + extra),
        noise,
        noise.map(lambda extra: extra + segment),
        st.just(""),
    )


@st.composite
def paths(draw: st.DrawFn, task_id: str) -> str:
    """A route of the service with one or two of its segments mutated, sometimes a segment
    more: one thing wrong at a time gets further into the app than everything at once."""
    segments = [part.replace(TASK, task_id) for part in draw(st.sampled_from(ROUTES))]
    for index in draw(st.sets(st.integers(0, len(segments) - 1), max_size=2)):
        segments[index] = draw(mutated(segments[index]))
    if draw(st.integers(0, 9)) == 0:
        segments.append(latin1(draw(raw_bytes)))
    return "/" + "/".join(segments)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(
        st.tuples(st.sampled_from(PARAMETERS).map(str.encode) | raw_bytes, raw_bytes),
        max_size=3,
    ))
    encoded = "&".join(
        f"{urllib.parse.quote(name, safe='')}={urllib.parse.quote(value, safe='')}"
        for name, value in pairs
    )
    if draw(st.integers(0, 4)) == 0:  # and bytes a server passes through undecoded
        encoded += "&" + latin1(draw(raw_bytes))
    return encoded


def authorization_values(token: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(f"Bearer {token}"),
        st.just(f"Bearer {token}"),
        st.just(f"Bearer {token}"),
        raw_bytes.map(lambda data: "Bearer " + latin1(data)),
        raw_bytes.map(latin1),
    )


@st.composite
def header_environ(draw: st.DrawFn, token: str) -> dict[str, str]:
    environ = {"HTTP_AUTHORIZATION": draw(authorization_values(token))}
    names = draw(st.lists(
        st.sampled_from(HEADERS) | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
        max_size=3,
    ))
    for name in names:
        value = latin1(draw(raw_bytes.filter(lambda data: b"\r" not in data and b"\n" not in data)))
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return environ


bodies = st.one_of(st.none(), raw_bytes, json_values.map(lambda value: json.dumps(value).encode()))


def assert_no_server_error(response: Any, request: str) -> None:
    """Below 500, no redirect, errors as problem+json, HTML only for the docs page."""
    status = response.status_code
    assert status < 500, f"{request} -> {status}: {response.get_data(as_text=True)[:500]}"
    assert not 300 <= status < 400, f"{request} -> {status} {response.headers.get('Location')}"
    if status >= 400:
        assert response.mimetype == PROBLEM, f"{request} -> {status} {response.mimetype}"
    if response.mimetype == "text/html":
        assert (response.request.path, status) == ("/docs", 200), f"{request} -> {status} HTML"


def test_random_bytes_anywhere_in_a_request_are_never_a_500(client: FlaskClient) -> None:
    task_id = new_task(client, USER, tags=["fuzz"])["id"]
    token = bearer(USER)["Authorization"].removeprefix("Bearer ")
    authorized = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    tasks = f"/api/{USER}/tasks"

    @SETTINGS
    @given(
        method=st.sampled_from(METHODS) | st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
        path=paths(task_id),
        query=query_strings(),
        headers=header_environ(token),
        body=bodies,
    )
    # The probe's findings (issue 12), tried first on every run.
    @example(method="GET", path=f"{tasks}/{task_id}\n", query="", headers=authorized, body=None)
    @example(method="GET", path=f"/api//{USER}/tasks", query="", headers=authorized, body=None)
    @example(method="OPTIONS", path=tasks, query="", headers={}, body=None)
    @example(method="GET", path=tasks, query="", body=None,
             headers={"HTTP_AUTHORIZATION": "Bearer eyJhbGciOlsiSFMyNTYiXX0.e30.c2ln"})
    def request_never_fails(
        method: str, path: str, query: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        environ = {"PATH_INFO": path, "QUERY_STRING": query, **headers}
        response = client.open("/", method=method, data=body, environ_overrides=environ)
        assert_no_server_error(response, f"{method} {path!r}?{query!r} {headers!r} {body!r}")

    request_never_fails()


def sign(header: dict[str, Any], payload: Any, key: bytes) -> str:
    """A JWT of any JSON header and payload, HMAC-SHA256-signed by hand (PyJWT would refuse
    most of these)."""
    import base64
    import hashlib
    import hmac

    def encode(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{encode(header)}.{encode(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


HEADER_FIELDS = ["alg", "kid", "typ", "cty", "crit", "b64", "jku", "jwk", "x5u", "zip"]
CLAIMS = ["sub", "exp", "nbf", "iat", "iss", "aud", "jti"]


@pytest.mark.parametrize("secret", [SECRET.encode(), b"not-the-secret"], ids=["signed", "forged"])
def test_tokens_holding_any_json_are_401_never_500(client: FlaskClient, secret: bytes) -> None:
    valid = {"sub": USER, "exp": 4_000_000_000}

    @SETTINGS
    @given(
        header=st.fixed_dictionaries({"alg": st.just("HS256") | json_values})
        | st.dictionaries(st.sampled_from(HEADER_FIELDS) | st.text(max_size=5), json_values),
        payload=st.dictionaries(st.sampled_from(CLAIMS) | st.text(max_size=5), json_values)
        .map(lambda claims: {**valid, **claims})
        | json_values,
    )
    def token_never_fails(header: dict[str, Any], payload: Any) -> None:
        token = sign(header, payload, secret)
        response = client.get(f"/api/{USER}/tasks", headers={"Authorization": f"Bearer {token}"})
        assert_no_server_error(response, f"{header!r} {payload!r}")
        assert response.status_code in (200, 401, 403), response.get_json()

    token_never_fails()
