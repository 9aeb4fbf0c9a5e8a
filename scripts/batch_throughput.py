"""Tasks created per second: one batch of 50 creates against 50 single creates, in-process.

    .venv/bin/python scripts/batch_throughput.py [--rounds 20] [--size 50] [--tags 0]

Runs the app in this process on a throwaway PostgreSQL database `todo_batch_throughput`
(TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test) and sends, through the
Flask test client, `--rounds` times each: `--size` single `POST /tasks`, then one
`POST /tasks/batch` of `--size` creates (each with `--tags` tags, the same few names). Prints
tasks/s of each (the median round) and their ratio. The test client skips the network and
the HTTP server, which a deployment adds to every single create but to the batch once, so
the ratio over HTTP should be larger than here. Not a timed test: the numbers depend on the
machine and on what else it runs (other test runs on the same machine swing them 2-3x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATABASE = "todo_batch_throughput"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--tags", type=int, default=0)
    options = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest import (
        create_pg_database,
        drop_pg_database,
        make_config,
        make_token,
        migrate,
    )
    from todo import create_app
    from todo.extensions import db

    url = create_pg_database(DATABASE)
    try:
        config = make_config(url, LOG_LEVEL="WARNING", MAX_TASKS_PER_USER="1000000")
        migrate(create_app(config))
        app = create_app(config)
        client = app.test_client()
        user = "throughput"
        headers = {"Authorization": f"Bearer {make_token(user, exp=int(time.time()) + 3600)}"}
        tags = [f"tag{i}" for i in range(options.tags)]

        def body(i: int) -> dict[str, Any]:
            return {"title": f"task {i}", "tags": tags}

        def singles() -> None:
            for i in range(options.size):
                response = client.post(f"/api/{user}/tasks", json=body(i), headers=headers)
                assert response.status_code == 201, response.get_json()

        def batch() -> None:
            operations = [{"op": "create", "task": body(i)} for i in range(options.size)]
            response = client.post(f"/api/{user}/tasks/batch", headers=headers,
                                   json={"operations": operations})
            assert response.status_code == 200, response.get_json()

        rates = {}
        for name, run in (("single creates", singles), ("one batch", batch)):
            rates[name] = tasks_per_second(run, options.size, options.rounds)
        for name, rate in rates.items():
            print(f"{name:>15}: {rate:8.0f} tasks/s  ({options.size} creates, "
                  f"{options.tags} tags each, median of {options.rounds} rounds)")
        print(f"{'ratio':>15}: {rates['one batch'] / rates['single creates']:8.1f}x")
        with app.app_context():
            db.engine.dispose()
    finally:
        drop_pg_database(DATABASE)


def tasks_per_second(run: Callable[[], None], size: int, rounds: int) -> float:
    run()  # warm up: connections, compiled statements, the tags
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return size / statistics.median(seconds)


if __name__ == "__main__":
    main()
