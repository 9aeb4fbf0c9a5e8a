"""The service against the tokens a real Better Auth issues (API.md, "Identity").

A real `better-auth` (the npm package, pinned in `tests/better_auth/package-lock.json`) runs
in Node with its JWT plugin (`tests/better_auth/server.mjs`): the tests sign a user up
through its HTTP API, take the user's JWT from `GET /api/auth/token`, and point the service
at its `GET /api/auth/jwks`, with `JWT_ISSUER` and `JWT_AUDIENCE` set to its base URL, as a
deployment next to a Next.js frontend would. Every algorithm the plugin offers is covered:
EdDSA (its default), ES256, ES512, RS256 and PS256. A second instance with keys of its own
(same algorithm, same issuer and audience) stands for a stranger's frontend.

Frontends without the plugin sign their own HS256 token on the server with
`BETTER_AUTH_SECRET`; that one is made here with PyJWT, claim for claim and header for
header what `jose`'s `SignJWT` in a Next.js route produces.

The first run installs the package with `npm ci` into `tests/better_auth/node_modules` (again
whenever `package.json` or the lock file changes). Without `node`/`npm`, or when the install fails, the tests
that need Node skip with the reason, except under `CI=true`, where they fail.

Backends: the tests that write (create, list, delete) run on every backend like every API
test, since a Better Auth id is what the user row is keyed by; the token's shape needs no
database, and the tests whose answer comes from the token alone (401, 403) run on SQLite
only.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest
from flask.testing import FlaskClient

from tests.conftest import IN_CI, make_config
from todo import create_app
from todo.extensions import db

BETTER_AUTH_DIR = Path(__file__).resolve().parent / "better_auth"
NODE_MODULES = BETTER_AUTH_DIR / "node_modules"
# Written after a successful `npm ci`: the digest of the manifest and lock it installed.
INSTALL_STAMP = NODE_MODULES / ".todo-api-installed"
NPM_CI_TIMEOUT_SECONDS = 600
START_TIMEOUT_SECONDS = 30

ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
# What the plugin's JWKS says about each algorithm's key: (kty, crv).
KEY_TYPES = {
    "EdDSA": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}
TOKEN_LIFETIME_SECONDS = 15 * 60
PASSWORD = "correct horse battery staple"

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI=true, where these tests must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Better Auth tests must run)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- installing better-auth


def _manifest_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((BETTER_AUTH_DIR / name).read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One `npm ci` at a time (pytest-xdist workers share the folder)."""
    key = hashlib.sha256(str(BETTER_AUTH_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"todo-api-better-auth-{key}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_better_auth() -> str | None:
    """Run `npm ci` when node_modules is missing or was installed from another lock file.
    Returns why Better Auth cannot run, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are needed to run Better Auth (Node 20+)"
    with _install_lock():
        wanted = _manifest_digest()
        if INSTALL_STAMP.exists() and INSTALL_STAMP.read_text().strip() == wanted:
            return None
        command = ["npm", "ci", "--prefer-offline", "--ignore-scripts", "--no-audit",
                   "--no-fund", "--no-progress", "--loglevel=error"]
        try:
            result = subprocess.run(command, cwd=BETTER_AUTH_DIR, capture_output=True,
                                    text=True, timeout=NPM_CI_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            return f"`npm ci` in {BETTER_AUTH_DIR} took over {NPM_CI_TIMEOUT_SECONDS}s"
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()[-15:]
            return f"`npm ci` in {BETTER_AUTH_DIR} failed:\n" + "\n".join(output)
        INSTALL_STAMP.write_text(wanted + "\n")
    return None


@pytest.fixture(scope="session")
def better_auth_installed() -> None:
    reason = install_better_auth()
    if reason is not None:
        unavailable(reason)


# ---------------------------------------------------------------- a running instance


@dataclass
class BetterAuthUser:
    id: str
    email: str
    name: str
    cookie: str  # the session cookies, as a browser would send them back


@dataclass
class BetterAuth:
    """A running Better Auth server and the calls a frontend makes to it."""

    base_url: str
    alg: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/api/auth/jwks"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             cookie: str | None = None) -> tuple[int, Message, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if cookie:
            headers["Cookie"] = cookie
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status, response_headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw = error.read()
            status, response_headers = error.code, error.headers
        return status, response_headers, json.loads(raw) if raw else None

    def sign_up(self, name: str = "Alice Example") -> BetterAuthUser:
        """`authClient.signUp.email(...)`: a new user, signed in (the session cookie is set)."""
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        status, headers, body = self.call(
            "POST", "/api/auth/sign-up/email",
            {"email": email, "password": PASSWORD, "name": name},
        )
        assert status == 200, (status, body)
        cookies = [raw.split(";", 1)[0] for raw in headers.get_all("Set-Cookie") or []]
        assert any(c.startswith("better-auth.session_token=") for c in cookies), cookies
        user = body["user"]
        assert (user["email"], user["name"]) == (email, name), body
        return BetterAuthUser(user["id"], email, name, "; ".join(cookies))

    def token(self, user: BetterAuthUser) -> str:
        """`authClient.token()`: the session's JWT."""
        status, _, body = self.call("GET", "/api/auth/token", cookie=user.cookie)
        assert status == 200, (status, body)
        token: str = body["token"]
        return token

    def session_jwt(self, user: BetterAuthUser) -> str:
        """The JWT the plugin adds to `getSession()` replies as the `set-auth-jwt` header."""
        status, headers, body = self.call("GET", "/api/auth/get-session", cookie=user.cookie)
        assert status == 200 and body["user"]["id"] == user.id, (status, body)
        token = headers.get("set-auth-jwt")
        assert token, dict(headers)
        return token

    def jwks(self) -> dict[str, Any]:
        status, _, body = self.call("GET", "/api/auth/jwks")
        assert status == 200, (status, body)
        keys: dict[str, Any] = body
        return keys

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            # Closing its stdin is its signal to exit; terminate in case it does not.
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()


def start_better_auth(alg: str, log_path: Path, **environ: str) -> BetterAuth:
    """Start `server.mjs` on a port the system picks; return once it answers."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        ["node", "server.mjs"],
        cwd=BETTER_AUTH_DIR,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PORT": "0", "JWT_ALG": alg, **environ},
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    base_url = None
    while base_url is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"ready"' in line:
                base_url = json.loads(line)["baseURL"]
        if base_url is None:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                # Installed but not starting is a fault of ours, not a missing tool.
                pytest.fail(f"Better Auth ({alg}) did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.05)
    instance = BetterAuth(base_url, alg, process, log_path)
    while True:
        with contextlib.suppress(OSError):
            if instance.call("GET", "/api/auth/ok")[0] == 200:
                return instance
        if time.monotonic() > deadline:
            instance.stop()
            pytest.fail(f"Better Auth ({alg}) at {base_url} did not answer:\n{instance.log()[-2000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def better_auth(
    better_auth_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., BetterAuth]]:
    """`better_auth(alg)` -> the running instance for that algorithm, started on first use;
    `better_auth(alg, "other", JWT_ISSUER=...)` -> another one, with keys of its own."""
    instances: dict[tuple[str, str], BetterAuth] = {}
    logs = tmp_path_factory.mktemp("better_auth")

    def get(alg: str, name: str = "frontend", **environ: str) -> BetterAuth:
        if (alg, name) not in instances:
            instances[alg, name] = start_better_auth(alg, logs / f"{alg}-{name}.log", **environ)
        return instances[alg, name]

    yield get
    for instance in instances.values():
        instance.stop()


@pytest.fixture(params=ALGORITHMS)
def alg(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def frontend(better_auth: Callable[..., BetterAuth], alg: str) -> BetterAuth:
    """The Better Auth instance the service is configured for."""
    return better_auth(alg)


@pytest.fixture
def stranger(better_auth: Callable[..., BetterAuth], frontend: BetterAuth) -> BetterAuth:
    """Another Better Auth instance with the same algorithm, issuer and audience, but keys
    of its own: only the signature can tell its tokens apart."""
    return better_auth(frontend.alg, "stranger", JWT_ISSUER=frontend.base_url,
                       JWT_AUDIENCE=frontend.base_url)


# ---------------------------------------------------------------- the service


@contextlib.contextmanager
def service(database_url: str, **environ: str) -> Iterator[FlaskClient]:
    app = create_app(make_config(database_url, **environ))
    try:
        yield app.test_client()
    finally:
        with app.app_context():
            db.engine.dispose()


def jwks_settings(instance: BetterAuth) -> dict[str, str]:
    """A deployment that trusts this Better Auth's plugin tokens, and no shared secret."""
    return {
        "BETTER_AUTH_SECRET": "",
        "JWT_JWKS_URL": instance.jwks_url,
        "JWT_ISSUER": instance.base_url,
        "JWT_AUDIENCE": instance.base_url,
    }


@pytest.fixture
def api(database_url: str, frontend: BetterAuth) -> Iterator[FlaskClient]:
    """The service, configured for `frontend`'s JWKS, issuer and audience."""
    with service(database_url, **jwks_settings(frontend)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status and isinstance(body["detail"], str), body
    return body


def assert_tasks_round_trip(client: FlaskClient, user_id: str, token: str) -> None:
    """Create, list, read and delete a task on the user's own path."""
    tasks = f"/api/{user_id}/tasks"
    created = client.post(tasks, json={"title": "Buy milk", "tags": ["errands"]},
                          headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    task = created.get_json()
    assert task["user_id"] == user_id and task["title"] == "Buy milk", task
    assert created.headers["Location"].endswith(f"{tasks}/{task['id']}")

    listed = client.get(tasks, headers=bearer(token))
    assert listed.status_code == 200, listed.get_json()
    assert [t["id"] for t in listed.get_json()["data"]] == [task["id"]]
    assert listed.get_json()["total"] == 1

    deleted = client.delete(f"{tasks}/{task['id']}", headers=bearer(token))
    assert deleted.status_code == 204 and deleted.data == b""
    listed = client.get(tasks, headers=bearer(token))
    assert listed.status_code == 200 and listed.get_json()["data"] == []


# ---------------------------------------------------------------- Better Auth's JWT plugin


@pytest.mark.parametrize("source", ["token endpoint", "get-session header"])
def test_plugin_token_is_what_api_md_describes(frontend: BetterAuth, alg: str, source: str) -> None:
    user = frontend.sign_up("Alice Example")
    token = frontend.token(user) if source == "token endpoint" else frontend.session_jwt(user)

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    keys = frontend.jwks()["keys"]

    assert header["alg"] == alg
    assert isinstance(header["kid"], str) and header["kid"]
    [key] = [key for key in keys if key["kid"] == header["kid"]]
    kty, crv = KEY_TYPES[alg]
    assert (key["kty"], key.get("crv"), key["alg"]) == (kty, crv, alg), key
    assert "d" not in key and "p" not in key, "the JWKS must hold public keys only"

    assert claims["sub"] == user.id == claims["id"]
    assert (claims["email"], claims["name"]) == (user.email, user.name)
    assert claims["iss"] == frontend.base_url
    assert claims["aud"] == frontend.base_url
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_SECONDS
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.parametrize("source", ["token endpoint", "get-session header"])
def test_plugin_token_works_on_own_path(
    api: FlaskClient, frontend: BetterAuth, source: str
) -> None:
    user = frontend.sign_up()
    token = frontend.token(user) if source == "token endpoint" else frontend.session_jwt(user)
    assert_tasks_round_trip(api, user.id, token)


@sqlite_only
def test_plugin_token_is_refused_on_another_users_path(
    api: FlaskClient, frontend: BetterAuth
) -> None:
    alice, bob = frontend.sign_up("Alice"), frontend.sign_up("Bob")
    alices = bearer(frontend.token(alice))
    bobs_tasks = f"/api/{bob.id}/tasks"
    task = api.post(bobs_tasks, json={"title": "Bob's"}, headers=bearer(frontend.token(bob)))
    assert task.status_code == 201, task.get_json()
    task_url = f"{bobs_tasks}/{task.get_json()['id']}"

    assert_problem(api.post(bobs_tasks, json={"title": "Mine now"}, headers=alices), 403)
    assert_problem(api.get(bobs_tasks, headers=alices), 403)
    assert_problem(api.delete(task_url, headers=alices), 403)
    assert api.get(task_url, headers=bearer(frontend.token(bob))).status_code == 200


@sqlite_only
def test_token_of_another_better_auth_instance_is_401(
    api: FlaskClient, frontend: BetterAuth, stranger: BetterAuth
) -> None:
    mallory = stranger.sign_up("Mallory")
    token = stranger.token(mallory)
    claims = jwt.decode(token, options={"verify_signature": False})
    # Everything but the key matches what the service expects.
    assert jwt.get_unverified_header(token)["alg"] == frontend.alg
    assert (claims["iss"], claims["aud"]) == (frontend.base_url, frontend.base_url)

    response = api.get(f"/api/{mallory.id}/tasks", headers=bearer(token))
    body = assert_problem(response, 401)
    assert body["detail"] == "Token key id (kid) is not known."
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    created = api.post(f"/api/{mallory.id}/tasks", json={"title": "x"}, headers=bearer(token))
    assert_problem(created, 401)


# ---------------------------------------------------------------- HS256 frontends (no plugin)


FRONTEND_URL = "http://localhost:3000"


def nextjs_hs256_token(secret: str, *, sub: str, email: str, name: str,
                       issuer: str = FRONTEND_URL) -> str:
    """What a Next.js route signs with `jose` and `BETTER_AUTH_SECRET` after
    `auth.api.getSession()`:

        new SignJWT({ email, name }).setProtectedHeader({ alg: "HS256" })
          .setSubject(user.id).setIssuer(url).setAudience(url)
          .setIssuedAt().setExpirationTime("15m")
          .sign(new TextEncoder().encode(process.env.BETTER_AUTH_SECRET))
    """
    now = int(time.time())
    claims = {"email": email, "name": name, "sub": sub, "iss": issuer, "aud": issuer,
              "iat": now, "exp": now + TOKEN_LIFETIME_SECONDS}
    # `jose` writes no `typ`; PyJWT drops its default one when asked to.
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": None})


def better_auth_id() -> str:
    """An id as Better Auth generates them: 32 letters and digits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))


@pytest.fixture
def frontend_secret() -> str:
    """`openssl rand -base64 32`, as Better Auth's docs have you make `BETTER_AUTH_SECRET`."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_hs256_frontend_token_works_on_own_path(database_url: str, frontend_secret: str) -> None:
    user_id = better_auth_id()
    token = nextjs_hs256_token(frontend_secret, sub=user_id, email="alice@example.com",
                               name="Alice")
    assert jwt.get_unverified_header(token) == {"alg": "HS256"}
    settings = {"BETTER_AUTH_SECRET": frontend_secret, "JWT_ISSUER": FRONTEND_URL,
                "JWT_AUDIENCE": FRONTEND_URL}
    with service(database_url, **settings) as client:
        assert_tasks_round_trip(client, user_id, token)


@sqlite_only
def test_hs256_frontend_token_is_refused_on_another_path_or_with_another_secret(
    database_url: str, frontend_secret: str
) -> None:
    user_id = better_auth_id()
    token = nextjs_hs256_token(frontend_secret, sub=user_id, email="a@example.com", name="A")
    forged = nextjs_hs256_token(base64.b64encode(secrets.token_bytes(32)).decode(), sub=user_id,
                                email="a@example.com", name="A")
    settings = {"BETTER_AUTH_SECRET": frontend_secret, "JWT_ISSUER": FRONTEND_URL,
                "JWT_AUDIENCE": FRONTEND_URL}
    with service(database_url, **settings) as client:
        assert_problem(client.get(f"/api/{better_auth_id()}/tasks", headers=bearer(token)), 403)
        body = assert_problem(client.get(f"/api/{user_id}/tasks", headers=bearer(forged)), 401)
        assert body["detail"] == "Token signature is invalid."


@sqlite_only
def test_hs256_and_plugin_tokens_both_work_when_both_are_configured(
    database_url: str, frontend_secret: str, better_auth: Callable[..., BetterAuth]
) -> None:
    frontend = better_auth("EdDSA")
    plugin_user = frontend.sign_up("Plugin User")
    hs_user_id = better_auth_id()
    hs_token = nextjs_hs256_token(frontend_secret, sub=hs_user_id, email="hs@example.com",
                                  name="HS User", issuer=frontend.base_url)
    settings = {**jwks_settings(frontend), "BETTER_AUTH_SECRET": frontend_secret}
    with service(database_url, **settings) as client:
        assert_tasks_round_trip(client, plugin_user.id, frontend.token(plugin_user))
        assert_tasks_round_trip(client, hs_user_id, hs_token)


@sqlite_only
def test_jwks_only_deployment_refuses_hs256_tokens(
    database_url: str, frontend_secret: str, better_auth: Callable[..., BetterAuth]
) -> None:
    """With only `JWT_JWKS_URL` set, no shared-secret token is accepted (an HS token is never
    checked against a public key)."""
    frontend = better_auth("EdDSA")
    user_id = better_auth_id()
    token = nextjs_hs256_token(frontend_secret, sub=user_id, email="a@example.com", name="A",
                               issuer=frontend.base_url)
    with service(database_url, **jwks_settings(frontend)) as client:
        body = assert_problem(client.get(f"/api/{user_id}/tasks", headers=bearer(token)), 401)
    assert body["detail"] == "Tokens signed with a shared secret are not accepted."
