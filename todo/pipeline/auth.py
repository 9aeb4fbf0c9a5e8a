"""Bearer-token authentication, as API.md's Identity section specifies.

A token is verified only with the key family its algorithm names: HS256/384/512 with the
shared `BETTER_AUTH_SECRET`; EdDSA, ES256, ES512, RS256 and PS256 with the public keys served
at `JWT_JWKS_URL` (Better Auth's `/api/auth/jwks`). `alg: none` and anything else is refused.
The `before_request` hook then requires the path's `user_id` to be the token's `sub`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from flask import Flask, current_app, g, request
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import InvalidSubjectError, PyJWKClientConnectionError, PyJWKClientError

from todo.api.problems import ProblemError
from todo.data.models import USER_ID_MAX

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
KEY_TYPE_OF_ALGORITHM = {
    "EdDSA": "OKP",
    "ES256": "EC",
    "ES512": "EC",
    "RS256": "RSA",
    "PS256": "RSA",
}
# Better Auth's tokens are well under 2 KB; anything this large is not one of ours.
MAX_TOKEN_BYTES = 8 * 1024
# Endpoints that take no user token (and are not rate limited). Everything else requires one.
# `/metrics` checks a token of its own, METRICS_TOKEN (todo/pipeline/metrics.py).
PUBLIC_ENDPOINTS = frozenset(
    {
        "health.liveness",
        "health.readiness",
        "api-docs.openapi_json",
        "docs.swagger_ui",
        "docs.swagger_ui_asset",
        "docs.swagger_initializer",
        "index",
        "metrics.scrape",
    }
)
JWKS_REFRESH_COOLDOWN_SECONDS = 60
INVALID_SUBJECT = (
    f"Token subject must be a string of 1-{USER_ID_MAX} characters, without NUL characters "
    "or unpaired surrogates."
)
TIME_CLAIMS = ("exp", "nbf", "iat")
# RFC 7519's NumericDate is a JSON number of seconds since 1970; this bound (9999-12-31) keeps
# it within what floats and dates represent. PyJWT would also take "123", true and 10**400.
LATEST_NUMERIC_DATE = 253_402_300_799


class InvalidToken(Exception):
    """The token was rejected; `description` says why, safe to show the client."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class ResilientJWKClient(PyJWKClient):
    """Keeps serving the last key set it fetched when the JWKS endpoint is unreachable, so a
    blip at the auth server does not log every user out."""

    def __init__(self, uri: str, lifespan: float) -> None:
        super().__init__(
            uri,
            cache_jwk_set=True,
            lifespan=lifespan,
            timeout=5,
            # An unknown `kid` refetches the set at most once a minute.
            cooldown_duration=JWKS_REFRESH_COOLDOWN_SECONDS,
        )
        self._last_good: PyJWKSet | None = None
        # kid -> the `alg` the key set declares for it, if any. PyJWK keeps the JWK's members
        # only privately, and fills in a default `alg` where none was declared.
        self.declared_algorithms: dict[str, str | None] = {}

    def fetch_data(self) -> Any:
        try:
            data = super().fetch_data()
        except PyJWKClientConnectionError:
            raise
        except (ValueError, PyJWKClientError) as error:
            # A reply that is not a JSON object (an HTML error page, a cut-off body) means the
            # key server is unwell, like a refused connection, not that it has no keys.
            raise PyJWKClientConnectionError(f"The JWKS reply is not a key set: {error}") from error
        keys = data.get("keys") if isinstance(data, dict) else None
        if isinstance(keys, list):
            self.declared_algorithms = {
                key["kid"]: key.get("alg") for key in keys
                if isinstance(key, dict) and isinstance(key.get("kid"), str)
            }
        return data

    def get_jwk_set(self, refresh: bool = False) -> PyJWKSet:
        try:
            jwk_set = super().get_jwk_set(refresh)
        except PyJWKClientConnectionError:
            if self._last_good is None:
                raise
            return self._last_good
        self._last_good = jwk_set
        return jwk_set


@dataclass(frozen=True)
class TokenSettings:
    secret: str
    jwks_url: str
    issuer: str
    audience: str
    leeway_seconds: int
    jwks_cache_seconds: int


class TokenVerifier:
    """Verifies tokens and caches each verified token's claims until it expires."""

    CACHE_SIZE = 4096

    def __init__(self, settings: TokenSettings) -> None:
        self.settings = settings
        self._jwks = (
            ResilientJWKClient(settings.jwks_url, settings.jwks_cache_seconds)
            if settings.jwks_url
            else None
        )
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or `InvalidToken` saying why it was rejected."""
        cached = self._cached_claims(token)
        if cached is not None:
            return cached
        claims = self._verify(token)
        self._remember(token, claims)
        return claims

    def _cached_claims(self, token: str) -> dict[str, Any] | None:
        with self._cache_lock:
            entry = self._cache.get(token)
            if entry is None:
                return None
            expires_at, claims = entry
            if time.time() >= expires_at:
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            return claims

    def _remember(self, token: str, claims: dict[str, Any]) -> None:
        # Cached only until `exp` (without leeway), so expiry is never extended;
        # `nbf`/`iat` were already satisfied, so they cannot become unsatisfied later.
        expires_at = float(claims["exp"])
        with self._cache_lock:
            self._cache[token] = (expires_at, claims)
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("Token is too large.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("Token is malformed.") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):  # a list or object is not even hashable
            raise InvalidToken("Token algorithm is not accepted.")
        if algorithm in HMAC_ALGORITHMS:
            if not self.settings.secret:
                raise InvalidToken("Tokens signed with a shared secret are not accepted.")
            key: Any = self.settings.secret
        elif algorithm in KEY_TYPE_OF_ALGORITHM:
            key = self._public_key(header, algorithm).key
        else:
            raise InvalidToken("Token algorithm is not accepted.")
        claims = self._decode(token, key, algorithm)
        if not is_valid_subject(claims.get("sub")):
            raise InvalidToken(INVALID_SUBJECT)
        check_time_claims(claims, self.settings.leeway_seconds)
        return claims

    def _public_key(self, header: dict[str, Any], algorithm: str) -> PyJWK:
        if self._jwks is None:
            raise InvalidToken("Tokens signed with public keys are not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("Token has no key id (kid).")
        try:
            jwk = self._jwks.get_signing_key(kid)
        except PyJWKClientConnectionError as error:
            raise SigningKeysUnavailable() from error
        except (PyJWKClientError, jwt.PyJWTError):
            raise InvalidToken("Token key id (kid) is not known.") from None
        declared = self._jwks.declared_algorithms.get(kid)
        if jwk.key_type != KEY_TYPE_OF_ALGORITHM[algorithm] or declared not in (None, algorithm):
            raise InvalidToken("Token algorithm does not match its key.")
        return jwk

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        settings = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=settings.issuer or None,
                audience=settings.audience or None,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": bool(settings.audience),
                    # Checked by `check_time_claims`, which accepts numbers only.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidIssuerError:
            raise InvalidToken("Token issuer is not accepted.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("Token audience is not accepted.") from None
        except InvalidSubjectError:
            raise InvalidToken(INVALID_SUBJECT) from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"Token lacks the required '{error.claim}' claim.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("Token signature is invalid.") from None
        except jwt.PyJWTError:
            raise InvalidToken("Token is invalid.") from None
        return claims


def is_valid_subject(subject: Any) -> bool:
    """A user id the service can store and compare: PostgreSQL refuses NUL characters, and
    unpaired surrogates (which JSON's `\\ud800` escapes produce) cannot be encoded at all."""
    if not isinstance(subject, str) or not 1 <= len(subject) <= USER_ID_MAX:
        return False
    if "\x00" in subject:
        return False
    try:
        subject.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_time_claims(claims: dict[str, Any], leeway: float) -> None:
    """`exp`, `nbf` and `iat` as PyJWT checks them, but only as JSON numbers (RFC 7519's
    NumericDate); `InvalidToken` otherwise."""
    for name in TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise InvalidToken(
                f"Token claim '{name}' must be a NumericDate: a number of seconds since 1970."
            )
    now = time.time()
    if claims["exp"] <= now - leeway:
        raise InvalidToken("Token has expired.")
    if any(name in claims and claims[name] > now + leeway for name in ("nbf", "iat")):
        raise InvalidToken("Token is not valid yet.")


def _is_numeric_date(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= LATEST_NUMERIC_DATE  # False for NaN and infinities too


class SigningKeysUnavailable(ProblemError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The signing keys could not be fetched; try again shortly.",
            headers={"Retry-After": "5"},
        )


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _requires_token() -> bool:
    return not (
        request.method == "OPTIONS"
        or request.url_rule is None  # unknown path or method: routing answers 404/405
        or request.endpoint in PUBLIC_ENDPOINTS
    )


def _unauthorized(description: str | None) -> ProblemError:
    if description is None:
        return ProblemError(
            401,
            "A bearer token is required: send `Authorization: Bearer <jwt>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    return ProblemError(401, description, headers={"WWW-Authenticate": challenge})


def identify_caller() -> None:
    """`before_request`: verify the bearer token, if the endpoint needs one. Sets
    `g.user_id`, or `g.auth_failure` to the 401 that `authorize_request` will raise (so the
    rate limiter, which runs in between, can count refused requests too)."""
    if not _requires_token():
        return
    token = bearer_token()
    if token is None:
        g.auth_failure = _unauthorized(None)
        return
    verifier: TokenVerifier = current_app.extensions["todo.pipeline.auth"]
    try:
        if not token:
            raise InvalidToken("The bearer token is empty: send `Authorization: Bearer <jwt>`.")
        claims = verifier.verify(token)
    except InvalidToken as error:
        g.auth_failure = _unauthorized(error.description)
        return
    g.user_id = claims["sub"]


def authorize_request() -> None:
    """`before_request`: 401 without a valid token, 403 for another user's path."""
    if not _requires_token():
        return
    failure: ProblemError | None = g.get("auth_failure")
    if failure is not None:
        raise failure
    path_user_id = (request.view_args or {}).get("user_id")
    if path_user_id is not None and path_user_id != g.user_id:
        raise ProblemError(403, "This token may only be used for its own user's data.")


def setup(app: Flask) -> None:
    config = app.config
    app.extensions["todo.pipeline.auth"] = TokenVerifier(
        TokenSettings(
            secret=config["BETTER_AUTH_SECRET"],
            jwks_url=config["JWT_JWKS_URL"],
            issuer=config["JWT_ISSUER"],
            audience=config["JWT_AUDIENCE"],
            leeway_seconds=config["JWT_LEEWAY_SECONDS"],
            jwks_cache_seconds=config["JWT_JWKS_CACHE_SECONDS"],
        )
    )
