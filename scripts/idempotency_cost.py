"""What `Idempotency-Key` costs a create, in-process on PostgreSQL, in µs per request.

    .venv/bin/python scripts/idempotency_cost.py [--requests 2000]

Builds the app on a throwaway database `todo_idempotency_cost` on the test server
(TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test) and sends creates through
the Flask test client: without a key (on the app, and on the same app without the step's
hooks), with a new key each, the same key again (a replay), with a key for a user holding
10,000 live keys, and for a user with expired keys, whose every claim deletes
`PURGE_PER_CLAIM` of them. The kinds take turns request by request; each one's wall time
and this process's CPU time per request are printed (median and mean; the database server's
CPU shows in the wall time only). Also: the step's own cost on a request without a key (its
hooks, timed alone), and the plan of the per-claim purge.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "todo_idempotency_cost"


def seed_keys(url: str, user: str, count: int, age: str) -> None:
    """`count` done keys of `user`, claimed `age` ago (an SQL interval)."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO idempotency_keys (user_id, key, method, target, body_sha256, state,"
            " status, headers, body, created_at)"
            " SELECT :user, 'seed-' || n, 'POST', '/api/' || :user || '/tasks',"
            " sha256(n::text::bytea), 'done', 201, '{\"Content-Type\": \"application/json\"}',"
            " convert_to('{\"title\": \"seeded\"}', 'UTF8'),"
            " now() - CAST(:age AS interval) - n * interval '1 millisecond'"
            " FROM generate_series(1, :count) n"
        ), {"user": user, "count": count, "age": age})
        connection.execute(sa.text("ANALYZE idempotency_keys"))
    engine.dispose()


def interleaved(kinds: dict[str, Callable[[], Any]], requests: int
                ) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU µs of each of `requests` calls of each kind, the kinds taking turns
    request by request (so a busy moment of a shared machine hits all of them alike)."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
    for _ in range(requests):
        for name, send in kinds.items():
            wall, cpu = time.perf_counter(), time.process_time()
            send()
            samples[name].append(((time.perf_counter() - wall) * 1e6,
                                  (time.process_time() - cpu) * 1e6))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    options = parser.parse_args()
    from tests.conftest import bearer, create_pg_database, drop_pg_database, make_config, migrate
    from todo import create_app
    from todo.extensions import db
    from todo.pipeline import idempotency

    url = create_pg_database(DATABASE)
    config = make_config(url, MAX_TASKS_PER_USER="10000000", LOG_LEVEL="WARNING")
    migrate(create_app(config))
    total = options.requests
    seed_keys(url, "keeper", 10_000, "1 hour")
    seed_keys(url, "purger", (total + 10) * idempotency.PURGE_PER_CLAIM, "2 days")

    app = create_app(config)
    bare = create_app(config)  # the same app without the step's hooks
    bare.before_request_funcs[None].remove(idempotency.claim_key)
    bare.after_request_funcs[None].remove(idempotency.keep_response)
    bare.teardown_request_funcs[None].remove(idempotency.release_unfinished)
    client, bare_client = app.test_client(), bare.test_client()
    body = {"title": "Buy milk"}
    headers = {user: bearer(user) for user in ("plain", "bare", "keyed", "replayed", "keeper",
                                               "purger")}
    replay_key = str(uuid.uuid4())

    def create(user: str, key: str | None = None, on: Any = client) -> Callable[[], Any]:
        def send() -> None:
            extra = {"Idempotency-Key": key or str(uuid.uuid4())} if key != "" else {}
            response = on.post(f"/api/{user}/tasks", json=body,
                               headers={**headers[user], **extra})
            assert response.status_code == 201, response.get_data(as_text=True)
        return send

    kinds: dict[str, Callable[[], Any]] = {
        "no key": create("plain", ""),
        "no key, app without the step": create("bare", "", on=bare_client),
        "new key": create("keyed"),
        "same key again (replay)": create("replayed", replay_key),
        "new key, user with 10,000 live keys": create("keeper"),
        "new key, each claim purging 20 expired": create("purger"),
    }
    for send in kinds.values():  # warm up: pools, statement caches, the replayed key
        for _ in range(20):
            send()
    samples = interleaved(kinds, options.requests)

    print(f"PostgreSQL, Flask test client, {options.requests} creates of each kind, taking turns;"
          " per request: median (mean) µs")
    print(f"{'':42} {'wall':>15} {'CPU':>15}")
    for name, times in samples.items():
        walls, cpus = [wall for wall, _ in times], [cpu for _, cpu in times]
        print(f"{name:42} {statistics.median(walls):6.0f} ({statistics.mean(walls):6.0f})"
              f" {statistics.median(cpus):6.0f} ({statistics.mean(cpus):6.0f})")

    with app.test_request_context("/api/plain/tasks", method="POST", json=body,
                                  headers=headers["plain"]):
        response = app.response_class(b"{}", status=201)
        runs = 200_000
        started = time.perf_counter()
        for _ in range(runs):
            idempotency.claim_key()
            idempotency.keep_response(response)
            idempotency.release_unfinished(None)
        hooks = (time.perf_counter() - started) / runs * 1e6
    print(f"the step's hooks on a request without a key: {hooks:.2f} µs (no database access)")

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        remaining = connection.execute(sa.text(
            "SELECT count(*) FROM idempotency_keys WHERE user_id = 'purger'"
            " AND created_at < now() - interval '1 day'")).scalar()
        plan = connection.execute(sa.text(
            "EXPLAIN (ANALYZE, BUFFERS) WITH users_expired AS MATERIALIZED (SELECT key FROM"
            " idempotency_keys WHERE user_id = 'keeper' AND created_at < now() - interval"
            " '1 day' ORDER BY created_at LIMIT 20 FOR UPDATE SKIP LOCKED) DELETE FROM"
            " idempotency_keys WHERE user_id = 'keeper' AND key IN (SELECT key FROM"
            " users_expired)")).scalars().all()
    engine.dispose()
    print(f"purger's expired keys left: {remaining}")
    print("the per-claim purge for a user with 10,000 live keys and none expired:")
    print("\n".join(f"    {line}" for line in plan))
    for each in (app, bare):
        with each.app_context():
            db.engine.dispose()
    drop_pg_database(DATABASE)


if __name__ == "__main__":
    main()
