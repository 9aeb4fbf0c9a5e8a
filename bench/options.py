"""Command-line options of `python -m bench`, with the full and the `--smoke` defaults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import SCENARIOS

# Run only at the high connection counts, after the others: `users` (mixed's requests, each
# connection pausing like a person) at every --users-connections.
HIGH_CONCURRENCY_SCENARIOS = ("users",)
ALL_SCENARIOS = (*SCENARIOS, *HIGH_CONCURRENCY_SCENARIOS)
# Scenarios also served by the floor (bench/floor.py), alternating with the service.
FLOOR_SCENARIOS = ("list", "get")

FULL_DEFAULTS = {
    "sets": ["small", "large"],
    "connections": [16, 100],
    "duration": 30,
    "warmup": 5,
    "mixed_connections": [1000],
    "users_connections": [1000, 5000],
    "mixed_duration": 60,
    "floor_rounds": 2,
    "think_ms": (2000, 8000),
    "db_prefix": "todo_bench",
}
SMOKE_DEFAULTS = {
    "sets": ["small"],
    "connections": [4],
    "duration": 1,
    "warmup": 1,
    "mixed_connections": [32],
    "users_connections": [32, 64],
    "mixed_duration": 1,
    "floor_rounds": 1,
    "think_ms": (10, 50),
    "db_prefix": "todo_bench_smoke",
}


@dataclass(frozen=True)
class Options:
    smoke: bool
    sets: list[str]
    scenarios: list[str]
    connections: list[int]
    duration: int
    warmup: int
    mixed_connections: list[int]
    users_connections: list[int]
    mixed_duration: int
    floor_rounds: int
    mixed_set: str
    think_ms: tuple[int, int]
    workers: int | None
    threads: int | None
    worker_class: str | None
    keep: bool
    json_path: Path | None
    timeout: int
    wrk_threads: int
    pgbench_threads: int
    pgbench: bool
    db_prefix: str
    drop_after: bool
    results_dir: Path | None
    port: int | None


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _range_ms(text: str) -> tuple[int, int]:
    low, _, high = text.partition(",")
    try:
        values = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX milliseconds, got {text!r}") from None
    if not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return values


def _numbers(text: str) -> list[int]:
    try:
        numbers = [int(item) for item in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError("connection counts must be at least 1")
    return numbers


def _numbers_or_none(text: str) -> list[int]:
    """Like `_numbers`, but `0` (or nothing) is the empty list: skip the run."""
    if text.strip() in ("", "0"):
        return []
    return _numbers(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark todo-api under gunicorn with wrk, and its list/get SQL with "
        "pgbench. Database server: BENCH_DATABASE_URL (default "
        "postgresql://postgres@127.0.0.1:5432/postgres).",
    )
    add = p.add_argument
    add("--smoke", action="store_true",
        help="tiny data, ~1 s per scenario, 4 connections (CI's check that the bench runs)")
    add("--sets", type=_names, help="data sets: small (50x200), large (1000x1000); "
        "default small,large (smoke: small)")
    add("--scenarios", type=_names, default=list(ALL_SCENARIOS),
        help=f"default all: {','.join(ALL_SCENARIOS)} (users only runs at "
        "--users-connections; mixed also runs at --mixed-connections)")
    add("--connections", type=_numbers,
        help="concurrent connections per scenario, e.g. 16,100 (the default; smoke: 4)")
    add("--duration", type=int, help="seconds per scenario (default 30; smoke: 1)")
    add("--warmup", type=int, help="seconds of reads before measuring (default 5; smoke: 1)")
    add("--mixed-connections", type=_numbers_or_none,
        help="the extra `mixed` runs at high concurrency, connections that never pause, e.g."
        " 1000 (the default; smoke: 32; 0: skip)")
    add("--users-connections", type=_numbers_or_none,
        help="`users` runs (after those of mixed): mixed's requests, each connection pausing"
        " --think-ms before each request (default 1000,5000; smoke: 32,64; 0: skip)")
    add("--mixed-duration", type=int,
        help="duration of each mixed and users run above, in seconds (default 60; smoke: 1)")
    add("--mixed-set", help="the data set they run on (default: the last of --sets)")
    add("--think-ms", type=_range_ms,
        help="`users`: each connection pauses MIN,MAX ms before each request (default "
        "2000,8000; smoke: 10,50)")
    add("--floor-rounds", type=int,
        help="list and get: after each service run, run the floor (bench/floor.py) under "
        "the same gunicorn settings, alternating service/floor this many times (default 2: "
        "service, floor, service, floor; smoke: 1; 0: no floor)")
    add("--workers", type=int, help="gunicorn workers (WEB_CONCURRENCY)")
    add("--threads", type=int, help="threads per worker (GUNICORN_THREADS)")
    add("--worker-class", help="gunicorn worker class (GUNICORN_WORKER_CLASS)")
    add("--keep", action="store_true",
        help="reuse an already seeded database (its marker must match the data set)")
    add("--json", dest="json_path", type=Path, help="also write the results to this file")
    add("--timeout", type=int, default=5, help="wrk request timeout in seconds (default 5)")
    add("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    add("--pgbench-threads", type=int, default=2, help="pgbench -j (default 2)")
    add("--no-pgbench", dest="pgbench", action="store_false", help="skip pgbench")
    add("--db-prefix", help="database names are PREFIX_small, PREFIX_large "
        "(default todo_bench; smoke: todo_bench_smoke)")
    add("--drop-after", action="store_true", help="drop the databases at the end")
    add("--results-dir", type=Path,
        help="where logs, scripts and results.json go (default bench/results/<time>)")
    add("--port", type=int, help="port for gunicorn (default: a free one)")
    return p


def parse(argv: list[str] | None = None) -> Options:
    p = parser()
    args = p.parse_args(argv)
    defaults = SMOKE_DEFAULTS if args.smoke else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = [name for name in args.scenarios if name not in ALL_SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from "
                f"{', '.join(ALL_SCENARIOS)}")
    bad_sets = [name for name in args.sets if name not in ("small", "large")]
    if bad_sets or not args.sets:
        p.error("--sets takes small and/or large")
    mixed_set = args.mixed_set or args.sets[-1]
    if mixed_set not in args.sets:
        p.error(f"--mixed-set {mixed_set} is not one of --sets")
    if args.duration < 1 or args.warmup < 0 or args.floor_rounds < 0:
        p.error("--duration must be >= 1, --warmup and --floor-rounds >= 0")
    scenarios = [name for name in ALL_SCENARIOS if name in args.scenarios]
    return Options(
        smoke=args.smoke, sets=args.sets, scenarios=scenarios,
        connections=args.connections, duration=args.duration, warmup=args.warmup,
        mixed_connections=args.mixed_connections, users_connections=args.users_connections,
        mixed_duration=args.mixed_duration, floor_rounds=args.floor_rounds,
        mixed_set=mixed_set, think_ms=args.think_ms, workers=args.workers, threads=args.threads,
        worker_class=args.worker_class, keep=args.keep, json_path=args.json_path,
        timeout=args.timeout, wrk_threads=args.wrk_threads,
        pgbench_threads=args.pgbench_threads, pgbench=args.pgbench, db_prefix=args.db_prefix,
        drop_after=args.drop_after, results_dir=args.results_dir, port=args.port,
    )
