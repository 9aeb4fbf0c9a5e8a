"""Idempotent retries: `Idempotency-Key` on POST, PUT, PATCH and DELETE under
`/api/{user_id}` (API.md, Idempotent retries; the IETF httpapi draft).

Before the view (`claim_key`), a request that carries a key claims it for its user: a row
in flight in `idempotency_keys`, inserted with `ON CONFLICT DO NOTHING` in a transaction of
its own, committed before the view runs (so a concurrent retry sees it). If the key is
already there, nothing runs:

- another method, target (path and query) or body than the request that claimed it: 422;
- the same request, still in flight: 409 (with `Retry-After`);
- the same request, done: its kept response, with `Idempotent-Replayed: true`.

After the view (`keep_response`), a 2xx response is kept with the key (state done: status,
`Content-Type`, `ETag`, `Location`, body); any other answer releases the claim (deletes the
row), so a retry of a failed request runs again. A request that never reaches the after
hooks (a `BaseException` in the view, such as a worker's timeout) releases its claim when
the request is torn down (`release_unfinished`).

Keys live `IDEMPOTENCY_TTL_HOURS` from their claim; an expired key is a new key. A claim
still in flight after `IDEMPOTENCY_ABANDONED_AFTER_SECONDS` (its holder crashed, or lost
the database before it could release it) is abandoned: the next request with the key takes
it over as if it were new. Each claim also deletes up to `PURGE_PER_CLAIM` of the user's
expired keys (an index range scan of expired rows only; rows another claim is deleting are
skipped, not waited for), and `flask purge` deletes everyone's.

Requests without the header cost a dictionary lookup: no database access.

What this cannot promise: the kept response is stored in a transaction of its own after
the view's has committed. If the process dies in between, the key stays in flight, retries
get 409 until the claim is abandoned, and the next one runs the request again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_from_bytes

from flask import Flask, Response, current_app, g, request
from sqlalchemy import and_, bindparam, delete, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from todo.api.problems import ProblemError
from todo.data import database  # not its functions: it imports todo.pipeline (metrics)
from todo.data.models import IDEMPOTENCY_KEY_MAX, IdempotencyKey, IdempotencyState, utc_now

log = logging.getLogger("todo.idempotency")

KEY_HEADER = "Idempotency-Key"
KEY_ENVIRON = "HTTP_IDEMPOTENCY_KEY"  # how WSGI names the header
REPLAYED_HEADER = "Idempotent-Replayed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Visible ASCII (RFC 5234 VCHAR): no spaces, no control characters, nothing beyond ASCII.
VALID_KEY = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")
INVALID_KEY = (
    f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters (letters, "
    "digits and punctuation; no spaces or control characters), e.g. a UUID."
)
KEPT_HEADERS = ("Content-Type", "ETag", "Location")
# RFC 3986's path characters but `%`: what the fingerprint's target keeps as it is.
TARGET_SAFE = "/:@!$&'()*+,;=-._~"
# A claim deletes at most this many of its user's expired keys: each claim adds one key,
# so a user who keeps sending keys never accumulates expired ones, at a bounded cost.
PURGE_PER_CLAIM = 20
# `flask purge` deletes expired keys in transactions of at most this many rows.
PURGE_BATCH = 5000
# A key found taken whose row is gone by the time it is read (released by a failed
# request) is claimed again, this many times in all before answering 409.
CLAIM_ATTEMPTS = 3
SETTINGS_KEY = "todo.pipeline.idempotency"
IN_FLIGHT = IdempotencyState.IN_FLIGHT.value
DONE = IdempotencyState.DONE.value
Keys = IdempotencyKey


@dataclass(frozen=True)
class Settings:
    ttl: timedelta
    abandoned_after: timedelta


@dataclass(frozen=True)
class Fingerprint:
    """What makes two requests with one key the same request."""

    method: str
    target: str  # the path, and `?` and the query string when there is one
    body_sha256: bytes


def fingerprint(method: str, path: str, query_string: bytes, body: bytes) -> Fingerprint:
    """The target is kept percent-encoded (`%` included, so two targets stay two): a path
    segment may hold a NUL, which PostgreSQL's text cannot."""
    target = quote(path, safe=TARGET_SAFE)
    if query_string:
        target += "?" + quote_from_bytes(query_string, safe=TARGET_SAFE + "?")
    return Fingerprint(method, target, hashlib.sha256(body).digest())


def differences(kept: Fingerprint, given: Fingerprint) -> list[str]:
    """The parts of `given` that are not those of `kept`: `method`, `path`, `body`."""
    return [
        name
        for name, same in (
            ("method", kept.method == given.method),
            ("path", kept.target == given.target),
            ("body", kept.body_sha256 == given.body_sha256),
        )
        if not same
    ]


@dataclass(frozen=True)
class Claim:
    """A key this request holds: the row (user_id, key) whose `created_at` is `claimed_at`
    (after an abandoned claim is taken over, its first holder no longer matches)."""

    user_id: str
    key: str
    claimed_at: datetime


@dataclass(frozen=True)
class KeptKey:
    fingerprint: Fingerprint
    state: str
    status: int | None
    headers: dict[str, str] | None
    body: bytes | None


# ---------------------------------------------------------------- statements (built once)


def _claim_statement(dialect_insert: Any) -> Any:
    statement = dialect_insert(Keys).values(
        user_id=bindparam("user_id"),
        key=bindparam("key"),
        method=bindparam("method"),
        target=bindparam("target"),
        body_sha256=bindparam("body_sha256", type_=Keys.body_sha256.type),
        state=IN_FLIGHT,
        created_at=bindparam("now", type_=Keys.created_at.type),
    )
    return statement.on_conflict_do_nothing(index_elements=[Keys.user_id, Keys.key]).returning(
        Keys.key
    )


CLAIM = {
    "postgresql": _claim_statement(postgresql.insert),
    "sqlite": _claim_statement(sqlite.insert),
}
# This key, if it has expired or its claim was abandoned: it is free again.
FREE_KEY = delete(Keys).where(
    Keys.user_id == bindparam("user_id"),
    Keys.key == bindparam("key"),
    or_(
        Keys.created_at < bindparam("expired_before", type_=Keys.created_at.type),
        and_(
            Keys.state == IN_FLIGHT,
            Keys.created_at < bindparam("abandoned_before", type_=Keys.created_at.type),
        ),
    ),
)
# Some of the user's expired keys, oldest first, skipping rows another transaction holds
# (PostgreSQL; SQLite runs one writer at a time): claims of one user never wait for each
# other here, so they cannot deadlock either. The keys are chosen once, in a materialized
# CTE: as a plain `IN (subquery)` the planner may rescan the subquery for each row, and a
# rescan of `LIMIT ... FOR UPDATE` skips the rows this DELETE has already deleted and
# returns the next ones, so every expired key of the user went (seen on a fresh table).
_USERS_EXPIRED = (
    select(Keys.key)
    .where(
        Keys.user_id == bindparam("user_id"),
        Keys.created_at < bindparam("expired_before", type_=Keys.created_at.type),
    )
    .order_by(Keys.created_at)
    .limit(PURGE_PER_CLAIM)
    .with_for_update(skip_locked=True)
    .cte("users_expired")
    .prefix_with("MATERIALIZED")
)
PURGE_USERS_EXPIRED = delete(Keys).where(
    Keys.user_id == bindparam("user_id"), Keys.key.in_(select(_USERS_EXPIRED.c.key))
)
FIND_KEY = select(
    Keys.method, Keys.target, Keys.body_sha256, Keys.state, Keys.status, Keys.headers, Keys.body
).where(Keys.user_id == bindparam("user_id"), Keys.key == bindparam("key"))
_THE_CLAIM = (
    Keys.user_id == bindparam("user_id"),
    Keys.key == bindparam("key"),
    Keys.created_at == bindparam("claimed_at", type_=Keys.created_at.type),
    Keys.state == IN_FLIGHT,
)
# Both return the key if this request still held it (`Transaction.finish` needs a row).
KEEP_RESPONSE = (
    update(Keys)
    .where(*_THE_CLAIM)
    .values(
        state=DONE,
        status=bindparam("status"),
        headers=bindparam("headers", type_=Keys.headers.type),
        body=bindparam("body", type_=Keys.body.type),
    )
    .returning(Keys.key)
)
RELEASE = delete(Keys).where(*_THE_CLAIM).returning(Keys.key)
_EXPIRED = (
    select(Keys.user_id, Keys.key)
    .where(Keys.created_at < bindparam("expired_before", type_=Keys.created_at.type))
    .limit(bindparam("batch"))
    .cte("expired")
    .prefix_with("MATERIALIZED")
)
# Counted by what it returns: Python's sqlite3 has no row count for a statement that
# starts with WITH.
PURGE_EXPIRED = delete(Keys).where(
    tuple_(Keys.user_id, Keys.key).in_(select(_EXPIRED.c.user_id, _EXPIRED.c.key))
).returning(Keys.key)
ASYNCHRONOUS_COMMIT = text("SET LOCAL synchronous_commit = off")
# For erasing a user (there is no foreign key to cascade from `users`).
ERASE_USER_KEYS = delete(Keys).where(Keys.user_id == bindparam("user_id"))


# ---------------------------------------------------------------- the step


def claim_key() -> Response | None:
    """`before_request`: claim the request's key, or answer without running the view."""
    environ = request.environ  # read directly: this runs on every request
    if environ["REQUEST_METHOD"] not in UNSAFE_METHODS:
        return None
    key: str | None = environ.get(KEY_ENVIRON)
    if key is None:
        return None
    user_id = (request.view_args or {}).get("user_id")
    if user_id is None:  # not under /api/{user_id}, or no route at all (404, 405)
        return None
    if not VALID_KEY.fullmatch(key):
        raise ProblemError(400, INVALID_KEY, errors={"header": {KEY_HEADER: [INVALID_KEY]}})
    given = fingerprint(
        request.method, request.path, request.query_string, request.get_data(cache=True)
    )
    settings: Settings = current_app.extensions[SETTINGS_KEY]
    for _ in range(CLAIM_ATTEMPTS):
        now = utc_now()
        if _claim(user_id, key, given, now, settings):
            g.idempotency_claim = Claim(user_id, key, now)
            return None
        kept = _kept(user_id, key)
        if kept is None:
            continue  # released since: claim it again
        different = differences(kept.fingerprint, given)
        if different:
            raise _mismatch(different)
        if kept.state == IN_FLIGHT:
            raise _in_flight()
        return replay(kept)
    raise _in_flight()


def keep_response(response: Response) -> Response:
    """`after_request`: keep a 2xx response with the request's key; release the key of
    any other answer, so that a retry runs again."""
    claim: Claim | None = g.pop("idempotency_claim", None)
    if claim is None:
        return response
    if 200 <= response.status_code < 300 and not response.is_streamed:
        headers = {name: response.headers[name] for name in KEPT_HEADERS
                   if name in response.headers}
        _finish_claim(claim, "keep", KEEP_RESPONSE, {
            "status": response.status_code, "headers": headers, "body": response.get_data(),
        }, durable=True)
    else:
        _finish_claim(claim, "release", RELEASE, {}, durable=False)
    return response


def release_unfinished(error: BaseException | None) -> None:
    """`teardown_request`: a claim still held here was never answered by `keep_response`
    (the request died with a `BaseException`, or a hook before it raised)."""
    claim: Claim | None = g.pop("idempotency_claim", None)
    if claim is not None:
        _finish_claim(claim, "release", RELEASE, {}, durable=False)


def replay(kept: KeptKey) -> Response:
    assert kept.status is not None and kept.body is not None and kept.headers is not None
    response = current_app.response_class(kept.body, status=kept.status)
    del response.headers["Content-Type"]  # the kept one, if the response had one
    response.headers.update(kept.headers)
    response.headers[REPLAYED_HEADER] = "true"
    return response


def setup(app: Flask) -> None:
    config = app.config
    app.extensions[SETTINGS_KEY] = Settings(
        ttl=timedelta(hours=config["IDEMPOTENCY_TTL_HOURS"]),
        abandoned_after=timedelta(seconds=config["IDEMPOTENCY_ABANDONED_AFTER_SECONDS"]),
    )
    app.teardown_request(release_unfinished)


# ---------------------------------------------------------------- storage


def _claim(user_id: str, key: str, given: Fingerprint, now: datetime,
           settings: Settings) -> bool:
    """Claim the key in a transaction of its own (one round trip on PostgreSQL): free it if
    it expired or was abandoned, purge a few of the user's expired keys, then insert it
    unless it is taken. Whether this request now holds it.

    On PostgreSQL the claim commits without waiting for its WAL to reach disk (one flush
    less per request with a key): the view's write, if there is one, commits after it and
    waits for the WAL up to its own commit, the claim's included. A claim lost in a
    database crash belonged to a request whose write was lost too."""
    expired_before = now - settings.ttl
    with database.writing() as tx:
        if tx.dialect.name == "postgresql":
            tx.defer(ASYNCHRONOUS_COMMIT)
        tx.defer(FREE_KEY, {"user_id": user_id, "key": key, "expired_before": expired_before,
                            "abandoned_before": now - settings.abandoned_after})
        tx.defer(PURGE_USERS_EXPIRED, {"user_id": user_id, "expired_before": expired_before})
        row = tx.finish(CLAIM[tx.dialect.name], {
            "user_id": user_id, "key": key, "method": given.method, "target": given.target,
            "body_sha256": given.body_sha256, "now": now,
        })
    return row is not None


def _kept(user_id: str, key: str) -> KeptKey | None:
    with database.reading() as reads:
        row = reads.first(FIND_KEY, {"user_id": user_id, "key": key})
    if row is None:
        return None
    method, target, body_sha256, state, status, headers, body = row
    return KeptKey(Fingerprint(method, target, bytes(body_sha256)), state, status, headers,
                   bytes(body) if body is not None else None)


def _finish_claim(claim: Claim, what: str, statement: Any, values: Mapping[str, Any],
                  *, durable: bool) -> None:
    """Keep the response of, or release, this request's claim. The answer is decided by
    then, so a failure here is logged, not raised: the claim stays in flight until it is
    abandoned (`IDEMPOTENCY_ABANDONED_AFTER_SECONDS`), then the key is free again. (So a
    release may commit without waiting for the disk, as a claim does; keeping a response
    may not: lost in a crash, a retry would run the request again.)"""
    try:
        with database.writing() as tx:  # one round trip on PostgreSQL
            if not durable and tx.dialect.name == "postgresql":
                tx.defer(ASYNCHRONOUS_COMMIT)
            tx.finish(statement, {"user_id": claim.user_id, "key": claim.key,
                                  "claimed_at": claim.claimed_at, **values})
    except Exception:
        log.warning("could not %s the claim of an Idempotency-Key; it stays in flight until"
                    " it is abandoned", what, exc_info=True)


def purge_expired(now: datetime | None = None) -> int:
    """Delete every user's expired keys (`flask purge`), in batches of `PURGE_BATCH`, each
    its own transaction; how many were deleted."""
    settings: Settings = current_app.extensions[SETTINGS_KEY]
    expired_before = (now or utc_now()) - settings.ttl
    deleted = 0
    while True:
        with database.writing() as tx:
            count = len(tx.all(PURGE_EXPIRED, {"expired_before": expired_before,
                                               "batch": PURGE_BATCH}))
        deleted += count
        if count < PURGE_BATCH:
            return deleted


# ---------------------------------------------------------------- answers


def _mismatch(different: list[str]) -> ProblemError:
    parts = " and ".join([", ".join(different[:-1]), different[-1]] if len(different) > 1
                         else different)
    message = (
        f"This Idempotency-Key was used for another request (a different {parts}); a new "
        "request needs a new key."
    )
    return ProblemError(422, message, errors={"header": {KEY_HEADER: [message]}})


def _in_flight() -> ProblemError:
    return ProblemError(
        409,
        "A request with this Idempotency-Key is still being processed; retry shortly to get "
        "its response.",
        headers={"Retry-After": "1"},
    )
