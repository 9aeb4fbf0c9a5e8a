"""A migrated, seeded database per data set, reused across runs when `--keep` is given.

Seeding is plain SQL (generate_series) on its own connection with no statement timeout (the
app's 5 s `SET LOCAL statement_timeout` applies to the app's connections only). The shape of
the data imitates real use:

- users `bench-user-N`, each with 8 tags drawn from a 16-word vocabulary;
- 0-3 tags per task (25/35/25/15 %), a user's first tags used more than the others;
- priorities High/Medium/Low 20/60/20 %; 30 % completed;
- 30 % without a due date, the rest spread over today +-60 days;
- titles "<verb> <object><suffix>" from word lists, so a `search` for an object word finds
  about one task in 24 (and some descriptions); 40 % of descriptions are null;
- created_at spread over the last year, updated_at after it for 60 % of the tasks, and rows
  inserted in created_at order, so a user's tasks are scattered over the table as in real life.

The seed inserts with triggers off (replication role), so it sets what they keep itself: the
counts (migration 0005) and the change numbers of the changes feed (0006), numbered per user in
`updated_at` order as the migration numbers existing tasks: a user's latest change number is
its task count (200 on `small`), the `changes*` scenarios' cursors are made of it.

A marker table `bench.seed` records what was seeded and when; `--keep` reuses a database whose
marker matches the data set, after deleting the tasks earlier runs created through the API.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from bench import pg
from bench.datasets import USER_PREFIX, DataSet, task_id, task_id_sql

ROOT = Path(__file__).resolve().parent.parent
# 2: tasks carry their tag names (migration 0004); 3: users and tags carry counts (0005);
# 4: tasks and users carry change numbers (0006; version 3 left them all 0: triggers off)
SEED_VERSION = 4

VOCABULARY = [
    "work", "home", "errands", "health", "finance", "family", "shopping", "school",
    "travel", "fitness", "garden", "car", "reading", "kids", "urgent", "someday",
]
TAGS_PER_USER = 8
VERBS = [
    "Buy", "Call", "Email", "Fix", "Review", "Plan", "Book", "Pay", "Clean", "Write",
    "Schedule", "Return", "Order", "Prepare", "Renew", "Check", "Update", "Organise",
    "Finish", "Send",
]
OBJECTS = [
    "milk", "dentist", "report", "invoice", "tickets", "car", "garden", "presentation",
    "taxes", "passport", "groceries", "birthday gift", "insurance", "laundry", "budget",
    "meeting notes", "flat", "bike", "vet appointment", "newsletter", "slides", "kitchen",
    "library books", "phone bill",
]
SUFFIXES = [
    "", "", "", "", " for Monday", " before Friday", " this week", " again", " with Sam",
    " (urgent)", " for mum", " tomorrow",
]
NOTES = [
    "ask Alex first", "check the receipt", "see the email thread", "quick one",
    "needs an hour", "waiting for a reply", "bring the documents", "compare prices",
    "split with flatmates", "before the deadline",
]


@dataclass
class SeedResult:
    reused: bool
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    seeded_at: datetime | None = None
    reset_tasks: int = 0


def migrate(database_url: str, app_environ: Mapping[str, str]) -> None:
    """`flask --app wsgi db upgrade` against the bench database, as the README deploys it."""
    env = {
        **app_environ,
        "DATABASE_URL": database_url,
        "MIGRATION_DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrations failed:\n{result.stdout}{result.stderr}")


def prepare(
    server: str, dataset: DataSet, app_environ: Mapping[str, str], keep: bool
) -> SeedResult:
    """A database for `dataset`, migrated and seeded (or reused with `keep`)."""
    url = pg.database_url(server, dataset.database)
    if keep and pg.database_exists(server, dataset.database):
        migrate(url, app_environ)
        seeded_at = _matching_marker(url, dataset)
        if seeded_at is not None:
            deleted = _reset(url, seeded_at)
            _check_ids(url, dataset)
            return SeedResult(reused=True, seconds=0.0, seeded_at=seeded_at, reset_tasks=deleted)

    phases: dict[str, float] = {}
    started = time.monotonic()
    pg.recreate_database(server, dataset.database)
    migrate(url, app_environ)
    phases["migrations"] = time.monotonic() - started
    _seed(url, dataset, phases)
    seconds = time.monotonic() - started
    seeded_at = _write_marker(url, dataset, seconds)
    _check_ids(url, dataset)
    return SeedResult(reused=False, seconds=seconds, phases=phases, seeded_at=seeded_at)


def user_tag_names(database_url: str) -> dict[int, list[str]]:
    """Each user's tag names (for request bodies that use the user's own tags)."""
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT substr(user_id, length(%s) + 1)::int, array_agg(name ORDER BY name)"
                " FROM tags WHERE user_id LIKE %s GROUP BY user_id",
                (USER_PREFIX, USER_PREFIX + "%"),
            )
            return {int(number): list(names) for number, names in cursor.fetchall()}
    finally:
        connection.close()


# ---------------------------------------------------------------- seeding


def _session(database_url: str) -> psycopg2.extensions.connection:
    connection = pg.connect(database_url)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT setseed(0.4242)")
        try:
            # Skip foreign-key triggers: the rows are built consistent. Superuser only.
            cursor.execute("SET session_replication_role = replica")
        except psycopg2.errors.InsufficientPrivilege:
            pass
    return connection


# The seed runs with triggers off (replication role), so it sets the counts they keep, and
# each user's latest change number (the tasks' own are numbered as they are inserted).
COUNTS_SQL = """
UPDATE users SET task_count = counted.tasks, change_number = counted.latest
FROM (SELECT user_id, count(*) AS tasks, max(change_number) AS latest
      FROM tasks GROUP BY user_id) AS counted
WHERE counted.user_id = users.id;
UPDATE tags SET usage_count = counted.links
FROM (SELECT tag_id, count(*) AS links FROM task_tags GROUP BY tag_id) AS counted
WHERE counted.tag_id = tags.id;
DELETE FROM tags WHERE usage_count = 0
"""


def _seed(database_url: str, dataset: DataSet, phases: dict[str, float]) -> None:
    connection = _session(database_url)
    params = {
        "prefix": USER_PREFIX,
        "users": dataset.users,
        "tasks": dataset.tasks_per_user,
        "vocabulary": VOCABULARY,
        "per_user": TAGS_PER_USER,
        "verbs": VERBS,
        "objects": OBJECTS,
        "suffixes": SUFFIXES,
        "notes": NOTES,
    }
    try:
        with connection.cursor() as cursor:
            started = time.monotonic()
            secondary = _secondary_indexes(cursor)
            for name, _ in secondary:
                cursor.execute(f"DROP INDEX {name}")
            cursor.execute(USERS_SQL, params)
            cursor.execute(TAGS_SQL, params)
            cursor.execute(TAG_RANK_SQL)
            cursor.execute(_tasks_sql(dataset), params)
            cursor.execute(LINKS_SQL, {"per_user": TAGS_PER_USER})
            cursor.execute(TASKS_WITH_TAG_NAMES_SQL)
            cursor.execute(TASK_TAGS_SQL)
            cursor.execute(COUNTS_SQL)
            phases["rows"] = time.monotonic() - started

            started = time.monotonic()
            for _, definition in secondary:
                cursor.execute(definition)
            phases["indexes"] = time.monotonic() - started

            started = time.monotonic()
            cursor.execute("VACUUM (ANALYZE) users, tags, tasks, task_tags")
            try:
                # Flush the load now rather than in a checkpoint during a measurement.
                cursor.execute("CHECKPOINT")
            except psycopg2.errors.InsufficientPrivilege:
                pass
            phases["vacuum_analyze"] = time.monotonic() - started
    finally:
        connection.close()


def _secondary_indexes(cursor: psycopg2.extensions.cursor) -> list[tuple[str, str]]:
    """Indexes of tasks and task_tags not backing a constraint: dropped during the load and
    rebuilt from their own definitions (exactly as the migrations made them), which is much
    faster than maintaining them row by row."""
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid IN ('tasks'::regclass, 'task_tags'::regclass)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """
    )
    return [(str(name), str(definition)) for name, definition in cursor.fetchall()]


USERS_SQL = """
INSERT INTO users (id, created_at)
SELECT %(prefix)s || u, now() - interval '400 days' + u * interval '1 second'
FROM generate_series(1, %(users)s) AS u
"""

TAGS_SQL = """
INSERT INTO tags (id, user_id, name, name_key, created_at)
SELECT gen_random_uuid(), %(prefix)s || u, v.name, lower(v.name), now() - interval '390 days'
FROM generate_series(1, %(users)s) AS u
CROSS JOIN LATERAL (
    SELECT name FROM unnest(%(vocabulary)s::text[]) AS name
    ORDER BY md5(u::text || name) LIMIT %(per_user)s
) AS v
"""

# Rank 1 is the user's most used tag.
TAG_RANK_SQL = """
CREATE TEMP TABLE bench_tag_rank AS
SELECT id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY md5(user_id || name)) AS rank
FROM tags;
CREATE INDEX ON bench_tag_rank (user_id, rank);
ANALYZE bench_tag_rank
"""


def _pick(array: str) -> str:
    """A uniformly random element of the text[] parameter `array`."""
    return (
        f"(%({array})s::text[])[1 + floor(random() * cardinality(%({array})s::text[]))::int]"
    )


def _tasks_sql(dataset: DataSet) -> str:
    """The tasks, first into a temporary table: their tag names are known only once the
    links are drawn."""
    return f"""
CREATE TEMP TABLE bench_tasks AS
SELECT
    {task_id_sql("u", "i", dataset.tasks_per_user)} AS id,
    %(prefix)s || u AS user_id,
    {_pick("verbs")} || ' ' || {_pick("objects")} || {_pick("suffixes")} AS title,
    CASE WHEN random() < 0.4 THEN NULL
         ELSE 'About the ' || {_pick("objects")} || ': ' || {_pick("notes")} END AS description,
    random() < 0.3 AS completed,
    CASE WHEN r_priority < 0.2 THEN 'High' WHEN r_priority < 0.8 THEN 'Medium' ELSE 'Low' END
        AS priority,
    CASE WHEN random() < 0.3 THEN NULL
         ELSE current_date + (floor(random() * 121) - 60)::int END AS due_date,
    created_at,
    CASE WHEN r_touched < 0.4 THEN created_at
         ELSE created_at + (now() - created_at) * r_touched END AS updated_at
FROM (
    SELECT u, i, random() AS r_priority, random() AS r_touched,
           now() - random() * interval '365 days' AS created_at
    FROM generate_series(1, %(users)s) AS u CROSS JOIN generate_series(1, %(tasks)s) AS i
    OFFSET 0
) AS raw
ORDER BY created_at
"""


# n tags per task (0-3, 25/35/25/15 %), consecutive ranks from a start skewed towards rank 1.
LINKS_SQL = """
CREATE TEMP TABLE bench_links AS
SELECT t.id AS task_id, r.id AS tag_id
FROM (
    SELECT id, user_id,
           floor(%(per_user)s * power(random(), 2))::int AS start,
           CASE WHEN r_count < 0.25 THEN 0 WHEN r_count < 0.60 THEN 1
                WHEN r_count < 0.85 THEN 2 ELSE 3 END AS n
    FROM (SELECT id, user_id, random() AS r_count FROM bench_tasks OFFSET 0) AS raw
    OFFSET 0
) AS t
CROSS JOIN LATERAL generate_series(0, t.n - 1) AS k
JOIN bench_tag_rank r ON r.user_id = t.user_id AND r.rank = (t.start + k) %% %(per_user)s + 1
"""

# In created_at order, as the service would have written them; tag names sorted as the API
# shows them (migration 0004 sorts existing tasks' names the same way); change numbers 1..n
# per user in updated_at order (as migration 0006 numbers existing tasks), given in the insert
# so the rows are written once, in the same place as before they had one.
TASKS_WITH_TAG_NAMES_SQL = """
INSERT INTO tasks (id, user_id, title, description, completed, priority, due_date,
                   created_at, updated_at, tag_names, change_number)
SELECT t.id, t.user_id, t.title, t.description, t.completed, t.priority, t.due_date,
       t.created_at, t.updated_at, coalesce(named.names, '[]'::json),
       row_number() OVER (PARTITION BY t.user_id ORDER BY t.updated_at, t.id)
FROM bench_tasks AS t
LEFT JOIN (
    SELECT l.task_id,
           json_agg(g.name ORDER BY g.name_key COLLATE "C", g.name COLLATE "C") AS names
    FROM bench_links AS l JOIN tags AS g ON g.id = l.tag_id
    GROUP BY l.task_id
) AS named ON named.task_id = t.id
ORDER BY t.created_at
"""

TASK_TAGS_SQL = "INSERT INTO task_tags (task_id, tag_id) SELECT task_id, tag_id FROM bench_links"


# ---------------------------------------------------------------- marker and reuse


def _write_marker(database_url: str, dataset: DataSet, seconds: float) -> datetime:
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS bench")
            cursor.execute(
                "CREATE TABLE bench.seed (users int NOT NULL, tasks_per_user int NOT NULL,"
                " version int NOT NULL, seeded_at timestamptz NOT NULL,"
                " seconds double precision NOT NULL)"
            )
            cursor.execute(
                "INSERT INTO bench.seed VALUES (%s, %s, %s, now(), %s) RETURNING seeded_at",
                (dataset.users, dataset.tasks_per_user, SEED_VERSION, seconds),
            )
            row = cursor.fetchone()
    finally:
        connection.close()
    assert row is not None
    seeded_at: datetime = row[0]
    return seeded_at


def _matching_marker(database_url: str, dataset: DataSet) -> datetime | None:
    """When the database holds exactly this data set (by its marker), the seeding time."""
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('bench.seed') IS NOT NULL")
            row = cursor.fetchone()
            if not row or not row[0]:
                return None
            cursor.execute("SELECT users, tasks_per_user, version, seeded_at FROM bench.seed")
            marker = cursor.fetchone()
    finally:
        connection.close()
    if marker is None or tuple(marker[:3]) != (
        dataset.users, dataset.tasks_per_user, SEED_VERSION
    ):
        return None
    seeded_at: datetime = marker[3]
    return seeded_at


def _reset(database_url: str, seeded_at: datetime) -> int:
    """Delete the tasks earlier runs created through the API (seeded ones predate the marker),
    so repeated runs see the same amount of data. Edits of seeded tasks stay."""
    return delete_created(database_url, seeded_at)


def delete_created(database_url: str, since: datetime) -> int:
    """Delete the tasks created after `since` (the service's clock, this machine's), and
    every tombstone: the seed makes none, so they are all of tasks the bench created and
    deleted. The deletions' triggers keep the counts (task and tag usage) and move each
    user's change number on; their tombstones would otherwise pile up run after run, and
    be part of the next run's `changes100` answers instead of tasks (no bench client holds
    a cursor across runs, so forgetting them loses nothing)."""
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
            cursor.execute("DELETE FROM tasks WHERE created_at > %s", (since,))
            deleted = cursor.rowcount
            cursor.execute("DELETE FROM task_tombstones")
            if deleted or cursor.rowcount:
                cursor.execute("VACUUM (ANALYZE) users, tags, tasks, task_tags, task_tombstones")
    finally:
        connection.close()
    return int(deleted)


@dataclass(frozen=True)
class ChangePosition:
    """Where a user's changes feed stands (what the `changes*` scenarios' cursors are made of)."""

    latest: int  # users.change_number: the user's latest change
    behind: int  # the change number with `tasks_after` task changes after it
    tasks_after: int  # as many as asked, or every task of a user with fewer (behind = 0)


def change_positions(database_url: str, behind: int) -> dict[int, ChangePosition]:
    """Each user's latest change number, and the change number `behind` task changes before
    it: the number of the user's task changed `behind + 1`-th most recently. Counted in
    tasks, not numbers, so the answer is `behind` tasks even where deletions (of tasks the
    bench created, their tombstones purged) left gaps in the numbers."""
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT substr(u.id, length(%(prefix)s) + 1)::int, u.change_number,"
                " coalesce((SELECT t.change_number FROM tasks AS t WHERE t.user_id = u.id"
                "           ORDER BY t.change_number DESC OFFSET %(behind)s LIMIT 1), 0),"
                " least(u.task_count, %(behind)s)"
                " FROM users AS u WHERE u.id LIKE %(pattern)s",
                {"prefix": USER_PREFIX, "behind": behind, "pattern": USER_PREFIX + "%"},
            )
            return {int(number): ChangePosition(int(latest), int(back), int(after))
                    for number, latest, back, after in cursor.fetchall()}
    finally:
        connection.close()


def _check_ids(database_url: str, dataset: DataSet) -> None:
    """The id formula wrk and pgbench use must name existing tasks; check a spread sample."""
    step_u = max(1, dataset.users // 7)
    step_i = max(1, dataset.tasks_per_user // 5)
    sample = [
        task_id(u, i, dataset.tasks_per_user)
        for u in range(1, dataset.users + 1, step_u)
        for i in range(1, dataset.tasks_per_user + 1, step_i)
    ] + [task_id(dataset.users, dataset.tasks_per_user, dataset.tasks_per_user)]
    connection = pg.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM tasks WHERE id = ANY(%s::uuid[])", (sample,))
            row = cursor.fetchone()
    finally:
        connection.close()
    found = int(row[0]) if row else 0
    if found != len(sample):
        raise RuntimeError(
            f"{dataset.database}: only {found} of {len(sample)} sampled seeded task ids exist;"
            " reseed without --keep"
        )

