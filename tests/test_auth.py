"""Authentication and authorisation through HTTP, as API.md's "Identity" section specifies.

Groups, in order:
- every endpoint x every bad credential -> 401 (and nothing written); another user's path -> 403
- the scheme word, accepted HMAC algorithms, leeway, issuer and audience
- JWKS: asymmetric algorithms, key lookup and refetching, algorithm confusion, outages
- public endpoints and CORS, oversized tokens, tokens outside `Authorization`
- any JSON value in any header field or claim: 401, never a 500
- the verified-claims cache never outlives `exp`
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import jwt.api_jwk
import jwt.api_jwt
import jwt.jwk_set_cache
import jwt.jwks_client
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import todo.pipeline.auth
from tests.conftest import SECRET, bearer, make_config, make_token, new_task
from todo import create_app
from todo.extensions import db

OWNER = "user-a"
OTHER = "user-b"
ORIGIN = "http://localhost:3000"
PROBLEM_JSON = "application/problem+json"
ISSUER = "http://localhost:3000"
AUDIENCE = "http://localhost:3000"

# Phrases the problem's `detail` contains, one per reason a token is refused.
NO_TOKEN = "bearer token is required"
MALFORMED = "malformed"
BAD_SIGNATURE = "signature is invalid"
EXPIRED = "expired"
NOT_YET_VALID = "not valid yet"
ALGORITHM_REFUSED = "algorithm is not accepted"
SUBJECT = "subject must be a string"
TOO_LARGE = "too large"
UNKNOWN_KID = "key id (kid) is not known"
KEY_MISMATCH = "does not match its key"
ISSUER_REFUSED = "issuer is not accepted"
AUDIENCE_REFUSED = "audience is not accepted"
HS_REFUSED = "shared secret are not accepted"
NUMERIC_DATE = "must be a numericdate"
ASYMMETRIC_REFUSED = "public keys are not accepted"


# ---------------------------------------------------------------- tokens made by hand


def now() -> int:
    return int(time.time())


def claims(sub: Any = OWNER, **extra: Any) -> dict[str, Any]:
    """A valid payload: `sub`, `iat` now, `exp` in ten minutes, plus `extra`."""
    return {"sub": sub, "iat": now(), "exp": now() + 600, **extra}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """`header.payload.` with an empty signature, the shape of an `alg: none` token."""
    return f"{b64url_json(header)}.{b64url_json(payload)}."


def hmac_token(
    header: dict[str, Any],
    payload: dict[str, Any],
    secret: bytes,
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A token HMAC-signed with any secret and digest, bypassing PyJWT's key checks (which
    refuse PEM keys as HMAC secrets, exactly the forgery we want to send)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """`token` with its payload swapped, keeping the original header and signature."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url_json(payload)}.{signature}"


def authorization(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


@functools.cache
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def p384_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


# ---------------------------------------------------------------- assertions


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """An RFC 7807 problem with this status; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json()
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.path
    return body


def assert_unauthorized(response: TestResponse, *, token_sent: bool = True) -> str:
    """A 401 problem with RFC 6750's `WWW-Authenticate`; returns the detail."""
    detail: str = assert_problem(response, 401)["detail"]
    expected = (
        f'Bearer error="invalid_token", error_description="{detail}"' if token_sent else "Bearer"
    )
    assert response.headers.getlist("WWW-Authenticate") == [expected]
    return detail


def assert_rejected(response: TestResponse, reason: str) -> None:
    """401 for a token that was sent, with `reason` in the detail."""
    detail = assert_unauthorized(response)
    assert reason in detail.lower(), detail


def task_list(client: FlaskClient, user_id: str) -> list[dict[str, Any]]:
    """Everything `user_id` has, read with a valid token."""
    response = client.get(f"/api/{user_id}/tasks", headers=bearer(user_id))
    assert response.status_code == 200, response.get_json()
    tasks: list[dict[str, Any]] = response.get_json()["data"]
    return tasks


def get_tasks(client: FlaskClient, token: str) -> TestResponse:
    return client.get(f"/api/{OWNER}/tasks", headers=authorization(token))


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def make_client(database_url: str) -> Iterator[Callable[..., FlaskClient]]:
    """`make_client(JWT_LEEWAY_SECONDS="0", ...)`: a client of an app built with these
    environment settings on this test's database."""
    apps: list[Flask] = []

    def build(**environ: str) -> FlaskClient:
        app = create_app(make_config(database_url, **environ))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def owner_task(client: FlaskClient) -> dict[str, Any]:
    return new_task(client, OWNER, description="owner's", tags=["home"])


_real_time = time.time
_real_monotonic = time.monotonic


class Clock:
    """Moves the clocks token verification reads: wall time (`exp`/`nbf`/`iat` in PyJWT and
    the claims cache in `todo.pipeline.auth`) and monotonic time (PyJWT's JWKS cache and cooldown)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return _real_time() + self.offset

    def monotonic(self) -> float:
        return _real_monotonic() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    shifted_time = SimpleNamespace(time=clock.time, monotonic=clock.monotonic)
    for module in (todo.pipeline.auth, jwt.api_jwk, jwt.jwk_set_cache, jwt.jwks_client):
        monkeypatch.setattr(module, "time", shifted_time)

    class ShiftedDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(clock.time(), tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", ShiftedDatetime)
    return clock


# ---------------------------------------------------------------- the endpoint matrix


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with `{user}` and `{task}` placeholders
    success: int
    body: dict[str, Any] | None = None

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    def call(
        self, client: FlaskClient, user_id: str, task_id: str, headers: dict[str, str]
    ) -> TestResponse:
        url = self.path.format(user=user_id, task=task_id)
        return client.open(url, method=self.method, json=self.body, headers=headers)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("POST", "/api/{user}/tasks", 201, {"title": "planted"}),
    Endpoint("GET", "/api/{user}/tasks", 200),
    Endpoint("GET", "/api/{user}/tasks/{task}", 200),
    Endpoint("PUT", "/api/{user}/tasks/{task}", 200, {"title": "hijacked", "completed": True}),
    Endpoint("PATCH", "/api/{user}/tasks/{task}", 200, {"title": "hijacked", "tags": []}),
    Endpoint("DELETE", "/api/{user}/tasks/{task}", 204),
    Endpoint("PATCH", "/api/{user}/tasks/{task}/complete", 200),
    Endpoint("GET", "/api/{user}/tags", 200),
    Endpoint("GET", "/api/{user}/tasks/stats", 200),
    Endpoint("GET", "/api/{user}/export", 200),
]


@dataclass(frozen=True)
class BadCredential:
    name: str
    headers: Callable[[], dict[str, str]]
    reason: str  # phrase of the problem's detail
    token_sent: bool = True


BAD_CREDENTIALS = [
    BadCredential("no-authorization-header", lambda: {}, NO_TOKEN, token_sent=False),
    BadCredential(
        "basic-scheme",
        lambda: {"Authorization": "Basic dXNlci1hOnNlY3JldA=="},
        NO_TOKEN,
        token_sent=False,
    ),
    BadCredential(
        "token-without-scheme", lambda: {"Authorization": make_token()}, NO_TOKEN, token_sent=False
    ),
    BadCredential("bearer-empty-token", lambda: {"Authorization": "Bearer "}, "token is empty"),
    BadCredential("garbage", lambda: authorization("garbage"), MALFORMED),
    BadCredential("not-base64", lambda: authorization("@@@.@@@.@@@"), MALFORMED),
    BadCredential(
        "truncated", lambda: authorization(make_token()[: len(make_token()) // 2]), MALFORMED
    ),
    BadCredential("extra-segment", lambda: authorization(make_token() + ".c2ln"), MALFORMED),
    BadCredential(
        "header-not-an-object",
        lambda: authorization(f"{b64url_json(['HS256'])}.{b64url_json(claims())}.c2ln"),
        MALFORMED,
    ),
    BadCredential(
        "tampered-sub",  # another user's genuine token with `sub` rewritten
        lambda: authorization(with_payload(make_token(OTHER), claims(OWNER))),
        BAD_SIGNATURE,
    ),
    BadCredential(
        "wrong-secret",
        lambda: authorization(make_token(key="another-secret-that-is-long-enough-0123456789")),
        BAD_SIGNATURE,
    ),
    BadCredential("expired", lambda: authorization(make_token(exp=now() - 3600)), EXPIRED),
    BadCredential(
        "alg-none",
        lambda: authorization(unsigned_token({"alg": "none", "typ": "JWT"}, claims())),
        ALGORITHM_REFUSED,
    ),
    BadCredential(
        "alg-None-with-hmac-signature",
        lambda: authorization(hmac_token({"alg": "None"}, claims(), SECRET.encode())),
        ALGORITHM_REFUSED,
    ),
    BadCredential(
        "alg-HS1",
        lambda: authorization(hmac_token({"alg": "HS1"}, claims(), SECRET.encode(), hashlib.sha1)),
        ALGORITHM_REFUSED,
    ),
    BadCredential(
        "alg-RS384",
        lambda: authorization(
            make_token(key=rsa_private_key(), algorithm="RS384", headers={"kid": "k"})
        ),
        ALGORITHM_REFUSED,
    ),
    BadCredential(
        "alg-ES384",
        lambda: authorization(
            make_token(key=p384_private_key(), algorithm="ES384", headers={"kid": "k"})
        ),
        ALGORITHM_REFUSED,
    ),
    BadCredential("missing-sub", lambda: authorization(make_token(None)), "'sub'"),
    BadCredential("empty-sub", lambda: authorization(make_token("")), SUBJECT),
    BadCredential("integer-sub", lambda: authorization(make_token(12345)), SUBJECT),
    BadCredential("list-sub", lambda: authorization(make_token([OWNER])), SUBJECT),
    BadCredential("sub-256-chars", lambda: authorization(make_token("u" * 256)), SUBJECT),
    BadCredential("missing-exp", lambda: authorization(make_token(exp=None)), "'exp'"),
    BadCredential(
        "nbf-in-future", lambda: authorization(make_token(nbf=now() + 3600)), NOT_YET_VALID
    ),
    BadCredential(
        "iat-beyond-leeway", lambda: authorization(make_token(iat=now() + 120)), NOT_YET_VALID
    ),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_valid_token_reaches_every_endpoint(
    client: FlaskClient, owner_task: dict[str, Any], endpoint: Endpoint
) -> None:
    response = endpoint.call(client, OWNER, owner_task["id"], bearer(OWNER))
    assert response.status_code == endpoint.success, response.get_json()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("credential", BAD_CREDENTIALS, ids=lambda c: c.name)
def test_bad_credentials_are_401_and_change_nothing(
    client: FlaskClient, owner_task: dict[str, Any], endpoint: Endpoint, credential: BadCredential
) -> None:
    before = task_list(client, OWNER)
    response = endpoint.call(client, OWNER, owner_task["id"], credential.headers())
    detail = assert_unauthorized(response, token_sent=credential.token_sent)
    assert credential.reason in detail.lower(), detail
    if endpoint.writes:
        assert task_list(client, OWNER) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_token_for_another_users_path_is_403_and_changes_nothing(
    client: FlaskClient, endpoint: Endpoint
) -> None:
    victim_task = new_task(client, OTHER, tags=["private"])
    before = task_list(client, OTHER)
    response = endpoint.call(client, OTHER, victim_task["id"], bearer(OWNER))
    assert_problem(response, 403)
    assert task_list(client, OTHER) == before
    assert task_list(client, OWNER) == []


# ---------------------------------------------------------------- scheme, HMAC algorithms


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_scheme_word_is_case_insensitive(client: FlaskClient, scheme: str) -> None:
    response = client.get(f"/api/{OWNER}/tasks", headers=authorization(make_token(), scheme))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
# conftest's SECRET is 52 bytes; PyJWT recommends 64 for HS512 but accepts it.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_shared_secret_algorithms_are_accepted(client: FlaskClient, algorithm: str) -> None:
    response = get_tasks(client, make_token(algorithm=algorithm))
    assert response.status_code == 200, response.get_json()


def test_frontend_signed_hs256_token_with_user_fields_is_accepted(client: FlaskClient) -> None:
    token = make_token(
        OWNER, email="a@example.com", name="A", iss=ISSUER, aud=AUDIENCE, exp=now() + 900
    )
    response = client.post(
        f"/api/{OWNER}/tasks", json={"title": "from the frontend"}, headers=authorization(token)
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user_id"] == OWNER


# ---------------------------------------------------------------- leeway


@pytest.mark.parametrize(
    ("token_claims", "accepted"),
    [
        pytest.param({"exp": -10}, True, id="expired-10s-ago"),
        pytest.param({"exp": -60}, False, id="expired-60s-ago"),
        pytest.param({"nbf": 10}, True, id="nbf-in-10s"),
        pytest.param({"nbf": 60}, False, id="nbf-in-60s"),
        pytest.param({"iat": 10}, True, id="iat-in-10s"),
        pytest.param({"iat": 60}, False, id="iat-in-60s"),
    ],
)
def test_default_leeway_is_30_seconds(
    client: FlaskClient, token_claims: dict[str, int], accepted: bool
) -> None:
    token = make_token(**{name: now() + delta for name, delta in token_claims.items()})
    response = get_tasks(client, token)
    if accepted:
        assert response.status_code == 200, response.get_json()
    else:
        assert_rejected(response, EXPIRED if "exp" in token_claims else NOT_YET_VALID)


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        pytest.param({"exp": -10}, EXPIRED, id="expired-10s-ago"),
        pytest.param({"nbf": 10}, NOT_YET_VALID, id="nbf-in-10s"),
    ],
)
def test_leeway_zero_rejects_what_the_default_accepts(
    make_client: Callable[..., FlaskClient], token_claims: dict[str, int], reason: str
) -> None:
    client = make_client(JWT_LEEWAY_SECONDS="0")
    token = make_token(**{name: now() + delta for name, delta in token_claims.items()})
    assert_rejected(get_tasks(client, token), reason)
    assert get_tasks(client, make_token()).status_code == 200


# ---------------------------------------------------------------- issuer and audience


@pytest.fixture
def strict_client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    """An app that requires `iss` and `aud`."""
    return make_client(JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE)


@pytest.mark.parametrize(
    "token_claims",
    [
        pytest.param({"iss": ISSUER, "aud": AUDIENCE}, id="aud-string"),
        pytest.param({"iss": ISSUER, "aud": ["https://other.example", AUDIENCE]}, id="aud-list"),
    ],
)
def test_expected_issuer_and_audience_are_accepted(
    strict_client: FlaskClient, token_claims: dict[str, Any]
) -> None:
    response = get_tasks(strict_client, make_token(**token_claims))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        pytest.param(
            {"iss": "https://evil.example", "aud": AUDIENCE}, ISSUER_REFUSED, id="iss-wrong"
        ),
        pytest.param({"aud": AUDIENCE}, "'iss'", id="iss-missing"),
        pytest.param(
            {"iss": ISSUER, "aud": "https://other.example"}, AUDIENCE_REFUSED, id="aud-wrong"
        ),
        pytest.param(
            {"iss": ISSUER, "aud": ["https://a.example", "https://b.example"]},
            AUDIENCE_REFUSED,
            id="aud-list-without-ours",
        ),
        pytest.param({"iss": ISSUER}, "'aud'", id="aud-missing"),
    ],
)
def test_wrong_or_missing_issuer_or_audience_is_401(
    strict_client: FlaskClient, token_claims: dict[str, Any], reason: str
) -> None:
    assert_rejected(get_tasks(strict_client, make_token(**token_claims)), reason)


@pytest.mark.parametrize(
    "token_claims",
    [
        pytest.param({"iss": "https://anyone.example", "aud": "https://any.example"}, id="any"),
        pytest.param({"aud": ["x", "y"]}, id="aud-list"),
        pytest.param({}, id="neither"),
    ],
)
def test_issuer_and_audience_are_not_checked_when_not_configured(
    client: FlaskClient, token_claims: dict[str, Any]
) -> None:
    response = get_tasks(client, make_token(**token_claims))
    assert response.status_code == 200, response.get_json()


# ---------------------------------------------------------------- JWKS: keys and server

ASYMMETRIC_ALGORITHMS = ["EdDSA", "ES256", "RS256", "PS256"]
JWKS_PATH = "/api/auth/jwks"


def generate_private_key(algorithm: str) -> Any:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(algorithm)


def public_jwk_of(public_key: Any) -> dict[str, Any]:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return jwt.algorithms.OKPAlgorithm.to_jwk(public_key, as_dict=True)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
    return jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)


@dataclass(frozen=True)
class SigningKey:
    """A key pair as Better Auth's JWT plugin keeps one: private half signs, public half is
    published in the JWKS under `kid`."""

    algorithm: str
    kid: str
    private_key: Any

    @classmethod
    def generate(cls, algorithm: str, kid: str | None = None) -> SigningKey:
        kid = kid or f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        return cls(algorithm, kid, generate_private_key(algorithm))

    def jwk(self, *, declare_alg: bool = True) -> dict[str, Any]:
        jwk = {**public_jwk_of(self.private_key.public_key()), "kid": self.kid, "use": "sig"}
        if declare_alg:
            jwk["alg"] = self.algorithm
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self, sub: str = OWNER, *, algorithm: str | None = None, kid: str | None = None,
        **extra: Any,
    ) -> str:
        return make_token(
            sub,
            key=self.private_key,
            algorithm=algorithm or self.algorithm,
            headers={"kid": kid or self.kid},
            jti=uuid.uuid4().hex,  # every token distinct, so none is served from the claims cache
            **extra,
        )


class JWKSServer:
    """A JWKS endpoint like Better Auth's `/api/auth/jwks` on a free port of 127.0.0.1; counts
    what it is asked and can be made to fail."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.requests: list[str] = []
        self.failure: tuple[int, str, bytes] | None = None
        self._stopped = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, content_type, body = server.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{JWKS_PATH}"

    @property
    def fetches(self) -> int:
        return len(self.requests)

    def publish(self, *keys: SigningKey | dict[str, Any]) -> None:
        self.jwks = {"keys": [k.jwk() if isinstance(k, SigningKey) else k for k in keys]}

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path != JWKS_PATH:
            return 404, "text/plain", b"not found"
        if self.failure is not None:
            return self.failure
        return 200, "application/json", json.dumps(self.jwks).encode()

    def fail(self, outage: str) -> None:
        """Simulate an outage: `refused` (nothing listens), `http-500`, `html-200` (an error
        page served with 200, as proxies and SPA fallbacks do) or `json-not-an-object`."""
        if outage == "refused":
            self.stop()
        elif outage == "http-500":
            self.failure = (500, "text/plain", b"Internal Server Error")
        elif outage == "html-200":
            self.failure = (200, "text/html", b"<!DOCTYPE html><html><body>Sorry</body></html>")
        elif outage == "json-not-an-object":
            self.failure = (200, "application/json", b'"maintenance"')
        else:
            raise ValueError(outage)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)


OUTAGES = ["refused", "http-500", "html-200", "json-not-an-object"]


@pytest.fixture
def jwks_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[JWKSServer]:
    # urllib honours *_proxy variables; a proxy must never see the local key server.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = JWKSServer()
    yield server
    server.stop()


@pytest.fixture
def jwks_client(make_client: Callable[..., FlaskClient], jwks_server: JWKSServer) -> FlaskClient:
    """An app that verifies with the JWKS and the shared secret, like a production setup."""
    return make_client(JWT_JWKS_URL=jwks_server.url)


# ---------------------------------------------------------------- JWKS: accepted tokens


@pytest.mark.parametrize("algorithm", ASYMMETRIC_ALGORITHMS)
def test_jwks_token_is_accepted_for_own_path(
    jwks_client: FlaskClient, jwks_server: JWKSServer, algorithm: str
) -> None:
    key = SigningKey.generate(algorithm)
    jwks_server.publish(key)
    response = jwks_client.post(
        f"/api/{OWNER}/tasks", json={"title": algorithm}, headers=authorization(key.sign())
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["user_id"] == OWNER


@pytest.mark.parametrize("algorithm", ASYMMETRIC_ALGORITHMS)
def test_jwks_token_for_another_users_path_is_403(
    jwks_client: FlaskClient, jwks_server: JWKSServer, algorithm: str
) -> None:
    key = SigningKey.generate(algorithm)
    jwks_server.publish(key)
    response = jwks_client.get(f"/api/{OTHER}/tasks", headers=authorization(key.sign(OWNER)))
    assert_problem(response, 403)


def test_better_auth_plugin_token_is_accepted(
    make_client: Callable[..., FlaskClient], jwks_server: JWKSServer
) -> None:
    """The JWT plugin's default: EdDSA, `kid`, iss = aud = the frontend, 15 minutes, user
    fields in the payload; its JWK may omit `alg`."""
    key = SigningKey.generate("EdDSA")
    jwks_server.publish(key.jwk(declare_alg=False))
    client = make_client(JWT_JWKS_URL=jwks_server.url, JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE)
    token = key.sign(
        OWNER, iss=ISSUER, aud=AUDIENCE, exp=now() + 900, email="a@example.com", name="A",
        emailVerified=True, image=None,
    )
    response = get_tasks(client, token)
    assert response.status_code == 200, response.get_json()


def test_jwks_keys_are_fetched_once_and_cached(
    jwks_client: FlaskClient, jwks_server: JWKSServer
) -> None:
    key = SigningKey.generate("EdDSA")
    jwks_server.publish(key)
    for _ in range(3):
        assert get_tasks(jwks_client, key.sign()).status_code == 200
    assert jwks_server.requests == [JWKS_PATH]


# ---------------------------------------------------------------- JWKS: rejected tokens


def test_token_signed_by_another_key_with_a_published_kid_is_401(
    jwks_client: FlaskClient, jwks_server: JWKSServer
) -> None:
    published = SigningKey.generate("EdDSA", kid="shared-kid")
    impostor = SigningKey.generate("EdDSA", kid="shared-kid")
    jwks_server.publish(published)
    assert_rejected(get_tasks(jwks_client, impostor.sign()), BAD_SIGNATURE)


def test_unknown_kid_is_401_and_refetches_at_most_once_a_minute(
    jwks_client: FlaskClient, jwks_server: JWKSServer, clock: Clock
) -> None:
    key = SigningKey.generate("ES256")
    jwks_server.publish(key)
    assert get_tasks(jwks_client, key.sign()).status_code == 200
    assert jwks_server.fetches == 1

    for attempt in range(5):
        assert_rejected(get_tasks(jwks_client, key.sign(kid=f"unknown-{attempt}")), UNKNOWN_KID)
    assert jwks_server.fetches == 1  # the first fetch started the cooldown

    clock.advance(61)
    for attempt in range(5):
        assert_rejected(get_tasks(jwks_client, key.sign(kid=f"later-{attempt}")), UNKNOWN_KID)
    assert jwks_server.fetches == 2

    clock.advance(61)
    assert_rejected(get_tasks(jwks_client, key.sign(kid="much-later")), UNKNOWN_KID)
    assert jwks_server.fetches == 3


def test_rotated_key_is_picked_up_once_the_cooldown_allows(
    jwks_client: FlaskClient, jwks_server: JWKSServer, clock: Clock
) -> None:
    old = SigningKey.generate("EdDSA")
    new = SigningKey.generate("EdDSA")
    jwks_server.publish(old)
    assert get_tasks(jwks_client, old.sign()).status_code == 200

    jwks_server.publish(old, new)
    assert_rejected(get_tasks(jwks_client, new.sign()), UNKNOWN_KID)
    assert jwks_server.fetches == 1

    clock.advance(61)
    response = get_tasks(jwks_client, new.sign())
    assert response.status_code == 200, response.get_json()
    assert jwks_server.fetches == 2
    assert get_tasks(jwks_client, old.sign()).status_code == 200
    assert jwks_server.fetches == 2


@pytest.mark.parametrize(
    "kid", ["../../etc/passwd", "' OR 1=1 --", "https://evil.example/jwks.json", "a" * 2000]
)
def test_hostile_kid_is_401_and_never_leaves_the_jwks_path(
    jwks_client: FlaskClient, jwks_server: JWKSServer, kid: str
) -> None:
    key = SigningKey.generate("RS256")
    jwks_server.publish(key)
    assert_rejected(get_tasks(jwks_client, key.sign(kid=kid)), UNKNOWN_KID)
    assert set(jwks_server.requests) == {JWKS_PATH}


@pytest.mark.parametrize(
    ("kid", "reason"),
    [
        pytest.param(None, "no key id", id="missing"),
        pytest.param("", "no key id", id="empty"),
        pytest.param(42, MALFORMED, id="integer"),
    ],
)
def test_asymmetric_token_without_a_string_kid_is_401(
    jwks_client: FlaskClient, jwks_server: JWKSServer, kid: Any, reason: str
) -> None:
    key = SigningKey.generate("EdDSA")
    jwks_server.publish(key)
    header = {"alg": "EdDSA", "typ": "JWT"} if kid is None else {"alg": "EdDSA", "kid": kid}
    # by hand: PyJWT refuses to encode a non-string kid
    signing_input = f"{b64url_json(header)}.{b64url_json(claims())}"
    token = f"{signing_input}.{b64url(key.private_key.sign(signing_input.encode()))}"
    assert_rejected(get_tasks(jwks_client, token), reason)
    assert jwks_server.fetches == 0


@pytest.mark.parametrize("secret", [SECRET, ""], ids=["secret-configured", "jwks-only"])
@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("material", ["pem", "jwk-json"])
def test_hs256_signed_with_the_public_key_is_401(
    make_client: Callable[..., FlaskClient],
    jwks_server: JWKSServer,
    secret: str,
    algorithm: str,
    material: str,
) -> None:
    """Algorithm confusion: the public key (which anyone can fetch) used as an HMAC secret."""
    key = SigningKey.generate(algorithm)
    jwks_server.publish(key)
    client = make_client(JWT_JWKS_URL=jwks_server.url, BETTER_AUTH_SECRET=secret)
    public = key.public_pem() if material == "pem" else json.dumps(key.jwk()).encode()
    token = hmac_token({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(), public)
    assert_rejected(get_tasks(client, token), BAD_SIGNATURE if secret else HS_REFUSED)
    assert jwks_server.fetches == 0  # an HS token never consults the public keys


def test_hs_token_is_401_when_only_jwks_is_configured(
    make_client: Callable[..., FlaskClient], jwks_server: JWKSServer
) -> None:
    jwks_server.publish(SigningKey.generate("EdDSA"))
    client = make_client(JWT_JWKS_URL=jwks_server.url, BETTER_AUTH_SECRET="")
    assert_rejected(get_tasks(client, make_token()), HS_REFUSED)


@pytest.mark.parametrize("algorithm", ASYMMETRIC_ALGORITHMS)
def test_asymmetric_token_is_401_when_no_jwks_is_configured(
    client: FlaskClient, algorithm: str
) -> None:
    assert_rejected(get_tasks(client, SigningKey.generate(algorithm).sign()), ASYMMETRIC_REFUSED)


@pytest.mark.parametrize(
    ("token_algorithm", "published_algorithm"),
    [
        pytest.param("ES256", "RS256", id="ES256-token-RSA-key"),
        pytest.param("RS256", "ES256", id="RS256-token-EC-key"),
        pytest.param("EdDSA", "ES256", id="EdDSA-token-EC-key"),
        pytest.param("ES256", "EdDSA", id="ES256-token-OKP-key"),
    ],
)
def test_token_algorithm_must_match_its_keys_type(
    jwks_client: FlaskClient, jwks_server: JWKSServer, token_algorithm: str,
    published_algorithm: str,
) -> None:
    published = SigningKey.generate(published_algorithm)
    signer = SigningKey.generate(token_algorithm, kid=published.kid)
    jwks_server.publish(published.jwk(declare_alg=False))  # only the key type can tell
    assert_rejected(get_tasks(jwks_client, signer.sign()), KEY_MISMATCH)


def test_token_algorithm_must_match_the_alg_its_jwk_declares(
    jwks_client: FlaskClient, jwks_server: JWKSServer
) -> None:
    key = SigningKey.generate("RS256")
    jwks_server.publish(key)
    assert_rejected(get_tasks(jwks_client, key.sign(algorithm="PS256")), KEY_MISMATCH)


# ---------------------------------------------------------------- JWKS: outages


@pytest.mark.parametrize("outage", OUTAGES)
def test_cached_keys_keep_working_while_the_jwks_endpoint_is_down(
    jwks_client: FlaskClient, jwks_server: JWKSServer, clock: Clock, outage: str
) -> None:
    key = SigningKey.generate("EdDSA")
    jwks_server.publish(key)
    assert get_tasks(jwks_client, key.sign()).status_code == 200
    jwks_server.fail(outage)

    assert get_tasks(jwks_client, key.sign()).status_code == 200
    clock.advance(301)  # past JWT_JWKS_CACHE_SECONDS: the next token triggers a refetch
    response = get_tasks(jwks_client, key.sign())
    assert response.status_code == 200, response.get_json()
    assert_rejected(get_tasks(jwks_client, key.sign(kid="unknown")), UNKNOWN_KID)


@pytest.mark.parametrize("outage", OUTAGES)
def test_jwks_endpoint_down_with_nothing_cached_is_503(
    jwks_client: FlaskClient, jwks_server: JWKSServer, outage: str
) -> None:
    key = SigningKey.generate("EdDSA")
    jwks_server.publish(key)
    jwks_server.fail(outage)
    response = get_tasks(jwks_client, key.sign())
    assert_problem(response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert "WWW-Authenticate" not in response.headers


def test_jwks_outage_with_nothing_cached_ends_when_the_endpoint_recovers(
    jwks_client: FlaskClient, jwks_server: JWKSServer
) -> None:
    key = SigningKey.generate("ES256")
    jwks_server.publish(key)
    jwks_server.fail("http-500")
    assert_problem(get_tasks(jwks_client, key.sign()), 503)
    jwks_server.failure = None
    response = get_tasks(jwks_client, key.sign())
    assert response.status_code == 200, response.get_json()


# ---------------------------------------------------------------- public endpoints, CORS


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/health", "application/json"),
        ("/health/ready", "application/json"),
        ("/openapi.json", "application/json"),
        ("/docs", "text/html"),
        ("/docs/swagger-initializer.js", "text/javascript"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer garbage"}],
    ids=["no-token", "bad-token"],
)
def test_public_endpoints_need_no_token(
    client: FlaskClient, path: str, mimetype: str, headers: dict[str, str]
) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == mimetype
    assert "WWW-Authenticate" not in response.headers


def test_cors_preflight_needs_no_token(client: FlaskClient) -> None:
    response = client.options(
        "/api/u/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(lambda: {}, 401, id="no-token"),
        pytest.param(lambda: {"Authorization": "Bearer garbage"}, 401, id="bad-token"),
        pytest.param(lambda: bearer(OTHER), 403, id="other-user"),
    ],
)
def test_auth_errors_are_readable_by_an_allowed_origin(
    client: FlaskClient, headers: Callable[[], dict[str, str]], status: int
) -> None:
    response = client.get(f"/api/{OWNER}/tasks", headers={"Origin": ORIGIN, **headers()})
    assert_problem(response, status)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]


def test_auth_errors_carry_no_cors_headers_for_other_origins(client: FlaskClient) -> None:
    response = client.get(f"/api/{OWNER}/tasks", headers={"Origin": "https://evil.example"})
    assert_unauthorized(response, token_sent=False)
    assert "Access-Control-Allow-Origin" not in response.headers


# ---------------------------------------------------------------- oversized tokens, wrong place


def test_100kb_token_is_401_fast(client: FlaskClient) -> None:
    token = make_token(padding="x" * 100_000)
    started = time.perf_counter()
    response = get_tasks(client, token)
    elapsed = time.perf_counter() - started
    assert_rejected(response, TOO_LARGE)
    assert elapsed < 1.0


def test_10kb_subject_is_401_even_on_its_own_path(client: FlaskClient) -> None:
    sub = "u" * 10_240
    started = time.perf_counter()
    response = client.get(f"/api/{sub}/tasks", headers=bearer(sub))
    elapsed = time.perf_counter() - started
    detail = assert_unauthorized(response)
    assert TOO_LARGE in detail.lower() or SUBJECT in detail.lower(), detail
    assert elapsed < 1.0


@pytest.mark.parametrize(
    "cookie",
    ["better-auth.session_token={token}", "token={token}", "Authorization=Bearer {token}"],
)
def test_token_in_a_cookie_is_not_accepted(client: FlaskClient, cookie: str) -> None:
    response = client.get(
        f"/api/{OWNER}/tasks", headers={"Cookie": cookie.format(token=make_token())}
    )
    assert_unauthorized(response, token_sent=False)


def test_token_in_the_query_string_is_not_accepted(client: FlaskClient) -> None:
    response = client.get(f"/api/{OWNER}/tasks?access_token={make_token()}")
    assert_unauthorized(response, token_sent=False)


# ---------------------------------------------------------------- any JSON value, anywhere

# Every JSON type, and values that trip up Python: unhashable, huge, not finite, NUL.
JSON_ODDITIES = [
    None, True, False, 0, -1, 1.5, 10**400, float("nan"), float("inf"), "", "x", "a\x00b",
    [], ["HS256"], {}, {"alg": "HS256"},
]


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else f"{text[:8]}...({len(text)} chars)"


def test_the_issues_token_with_a_list_as_alg_is_401(client: FlaskClient) -> None:
    response = get_tasks(client, "eyJhbGciOlsiSFMyNTYiXX0.e30.c2ln")  # {"alg": ["HS256"]}
    assert_rejected(response, ALGORITHM_REFUSED)


@pytest.mark.parametrize("field", ["alg", "kid", "typ", "cty", "crit", "b64", "jku", "jwk"])
def test_any_json_value_in_any_header_field_is_401_without_a_key(
    make_client: Callable[..., FlaskClient], field: str
) -> None:
    """Forged (no key needed): the service must refuse it before anything else could fail."""
    client = make_client(JWT_JWKS_URL="http://127.0.0.1:1/jwks")  # both key families on
    for value in JSON_ODDITIES:
        header = {"alg": "HS256", "kid": "k", field: value}
        response = get_tasks(client, hmac_token(header, claims(), b"not-the-secret"))
        assert response.status_code == 401, (header, response.get_data(as_text=True))
        assert_unauthorized(response)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claims_must_be_numbers_even_when_signed(client: FlaskClient, claim: str) -> None:
    for value in JSON_ODDITIES:
        token = hmac_token({"alg": "HS256"}, {**claims(), claim: value}, SECRET.encode())
        response = get_tasks(client, token)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e10:
            # A number: a real date, checked as one (`0` and `1.5` are long past).
            assert response.status_code in (200, 401), (value, response.get_json())
            continue
        assert response.status_code == 401, (value, response.get_data(as_text=True))
        missing = value is None and claim == "exp"  # PyJWT's `require`: null is absent
        assert_rejected(response, "lacks the required 'exp'" if missing else NUMERIC_DATE)


@pytest.mark.parametrize(
    "value",
    ["9999999999", "1e10", ["in-ten-minutes"], {"$date": "in-ten-minutes"}, 10**400, 1e300],
    ids=short_repr,
)
def test_exp_as_a_string_or_beyond_year_9999_is_401(client: FlaskClient, value: Any) -> None:
    if "in-ten-minutes" in json.dumps(value):  # a valid date, wrapped
        value = json.loads(json.dumps(value).replace('"in-ten-minutes"', str(now() + 600)))
    token = hmac_token({"alg": "HS256"}, {**claims(), "exp": value}, SECRET.encode())
    assert_rejected(get_tasks(client, token), NUMERIC_DATE)


@pytest.mark.parametrize(
    ("sub", "path_user"),
    [
        pytest.param("a\x00b", "a%00b", id="nul"),
        pytest.param("\ud800", OWNER, id="unpaired-surrogate"),
        pytest.param("a\udc00b", "a%ED%B0%80b", id="unpaired-low-surrogate"),
    ],
)
def test_signed_subject_that_cannot_be_stored_is_401(
    client: FlaskClient, sub: str, path_user: str
) -> None:
    """Only someone with the secret can send these; still a 401, never a database error."""
    token = hmac_token({"alg": "HS256"}, claims(sub), SECRET.encode())
    for response in (
        client.get(f"/api/{path_user}/tasks", headers=authorization(token)),
        client.post(f"/api/{path_user}/tasks", json={"title": "x"}, headers=authorization(token)),
    ):
        assert_rejected(response, SUBJECT)


@pytest.mark.parametrize("claim", ["sub", "iss", "aud", "jti"])
def test_any_json_value_in_other_claims_is_401_or_accepted_never_500(
    strict_client: FlaskClient, claim: str
) -> None:
    for value in JSON_ODDITIES:
        payload = {**claims(), "iss": ISSUER, "aud": AUDIENCE, claim: value}
        token = hmac_token({"alg": "HS256"}, payload, SECRET.encode())
        response = get_tasks(strict_client, token)
        assert response.status_code in (200, 401, 403), (value, response.get_data(as_text=True))
        if response.status_code == 401:
            assert_unauthorized(response)
        elif response.status_code == 403:  # a valid `sub` that is not this path's user
            assert_problem(response, 403)


# ---------------------------------------------------------------- the verified-claims cache


def test_cached_token_is_rejected_once_it_expires(
    make_client: Callable[..., FlaskClient], clock: Clock
) -> None:
    client = make_client(JWT_LEEWAY_SECONDS="0")
    token = make_token(exp=now() + 60)
    assert get_tasks(client, token).status_code == 200
    clock.advance(58)
    assert get_tasks(client, token).status_code == 200  # served from the cache
    clock.advance(3)
    assert_rejected(get_tasks(client, token), EXPIRED)


def test_token_accepted_within_leeway_is_rejected_once_past_it(
    client: FlaskClient, clock: Clock
) -> None:
    token = make_token(exp=now() - 10)
    assert get_tasks(client, token).status_code == 200
    clock.advance(25)
    assert_rejected(get_tasks(client, token), EXPIRED)
