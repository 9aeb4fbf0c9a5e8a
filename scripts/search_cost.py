"""The cost of the worst searches at 10,000 tasks on PostgreSQL, through the app.

    .venv/bin/python scripts/search_cost.py [--root OTHER_CHECKOUT] [--runs 7]

Seeds a throwaway database `todo_search_cost` on the test server (TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test) with two users of 10,000 tasks each: `heavy`
(short titles and notes, like bench/seed.py) and `adversary` (every title 200 and every
description 1,000 dots, the costliest content a user can write). Then times each search
through the Flask test client: median and minimum of `--runs` requests. `--root` measures
another checkout of the service (e.g. one made with `git archive`) against the same data.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

DATABASE = "todo_search_cost"
VERBS = ["Buy", "Call", "Email", "Fix", "Review", "Plan", "Book", "Pay"]
OBJECTS = ["milk", "dentist", "report", "invoice", "tickets", "car", "garden", "taxes"]
NOTES = ["ask Alex first", "check the receipt", "see the email thread", "needs an hour"]
SEARCHES = {
    "heavy": {
        "milk": "milk",
        "% x 200": "%" * 200,
        "_ x 200": "_" * 200,
        "ß x 200": "ß" * 200,
        "200 letters": "".join(random.Random(1).choice("abcdefghij") for _ in range(200)),
    },
    "adversary": {
        "% x 200": "%" * 200,
        ". x 199 + ','": "." * 199 + ",",  # matches 199 characters everywhere, then fails
    },
}


def seed(url: str) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    rows = []
    for i in range(10_000):
        created = now - timedelta(minutes=i)
        rows.append({"id": uuid.uuid4(), "u": "heavy", "t": created,
                     "title": f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} {i}",
                     "d": rng.choice(NOTES) if rng.random() < 0.6 else None})
        rows.append({"id": uuid.uuid4(), "u": "adversary", "t": created,
                     "title": "." * 200, "d": "." * 1000})
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for user in SEARCHES:
            connection.execute(sa.text("INSERT INTO users (id, created_at) VALUES (:u, :t)"),
                               {"u": user, "t": now})
        connection.execute(sa.text(
            "INSERT INTO tasks (id, user_id, title, description, completed, priority,"
            " created_at, updated_at, tag_names)"
            " VALUES (:id, :u, :title, :d, false, 'Medium', :t, :t, '[]')"), rows)
        connection.execute(sa.text("ANALYZE tasks"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    sys.path.insert(0, str(options.root))
    from tests.conftest import create_pg_database, make_config, make_token, migrate
    from todo import create_app

    url = create_pg_database(DATABASE)
    migrate(create_app(make_config(url)))
    seed(url)
    client = create_app(make_config(url, LOG_LEVEL="WARNING")).test_client()
    for user, searches in SEARCHES.items():
        headers = {"Authorization": f"Bearer {make_token(user, exp=int(time.time()) + 3600)}"}
        for label, text in searches.items():
            times, statuses = [], set()
            for _ in range(options.runs):
                started = time.perf_counter()
                response = client.get(f"/api/{user}/tasks", query_string={"search": text},
                                      headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                statuses.add(response.status_code)
            print(f"{user:9} {label:15} status {sorted(statuses)}  "
                  f"median {statistics.median(times):7.1f} ms  min {min(times):7.1f} ms")


if __name__ == "__main__":
    main()
