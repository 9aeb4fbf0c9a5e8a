"""`python -m bench`: seed, serve with gunicorn, load with wrk, compare with pgbench, report.

Per data set: prepare the database (bench.seed), record the SQL of one list and one get
request and turn it into pgbench scripts (bench.sqlcapture, bench.pgbench), start gunicorn
(bench.server), warm up, then run each scenario at each connection count with wrk (bench.wrk),
reads before writes so the reads see the data as seeded; pgbench follows `list` and `get` at
the same concurrency. The high-concurrency `mixed` run comes last, on one set, followed by
`users` (the same requests and connections, each connection pausing before each request
like a person), then the workers' peak RSS is read and gunicorn stopped. Progress goes to
stderr, the report to stdout.
"""

from __future__ import annotations

import os
import platform
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, pg, pgbench, report, seed, server, sqlcapture, wrk
from bench.datasets import DataSet, data_sets, task_id, user_id
from bench.options import Options, parse

ROOT = Path(__file__).resolve().parent.parent
PGBENCH_SCENARIOS = ("list", "get")
CONNECTION_MARGIN = 3  # slots left free for others when deciding whether pgbench fits


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_open_files_limit() -> int:
    """wrk and gunicorn (children inherit it) need a descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def git_revision() -> str:
    def git(*args: str) -> str:
        # --no-optional-locks: read only, never refresh the index.
        result = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT,
                                capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes" if git("status", "--porcelain") else "")


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def format_load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


class Bench:
    def __init__(self, options: Options, wrk_path: str, pgbench_path: str | None) -> None:
        self.options = options
        self.wrk_path = wrk_path
        self.pgbench_path = pgbench_path
        self.server_url = pg.server_url()
        self.secret = secrets.token_urlsafe(48)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.results_dir = options.results_dir or ROOT / "bench" / "results" / stamp
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.server_options = server.ServerOptions(
            options.workers, options.threads, options.worker_class
        )
        self.rows: list[report.Row] = []
        self.sets: list[report.SetReport] = []
        self.settings: dict[str, Any] = {}

    # ------------------------------------------------------------ one data set

    def run_set(self, dataset: DataSet) -> None:
        options = self.options
        url = pg.database_url(self.server_url, dataset.database)
        environ = server.app_environment(url, self.secret, self.server_options)
        self.settings = server.effective_settings(environ)

        progress(f"{dataset.name}: preparing {dataset.database} "
                 f"({dataset.users} users x {dataset.tasks_per_user} tasks)")
        seeded = seed.prepare(self.server_url, dataset, environ, options.keep)
        if seeded.reused:
            progress(f"{dataset.name}: reused (seeded {seeded.seeded_at:%Y-%m-%d %H:%M}); "
                     f"deleted {seeded.reset_tasks} tasks created by earlier runs")
        else:
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in seeded.phases.items())
            progress(f"{dataset.name}: seeded in {seeded.seconds:.1f} s ({phases})")
        set_report = report.SetReport(
            name=dataset.name, users=dataset.users, tasks_per_user=dataset.tasks_per_user,
            database=dataset.database, reused=seeded.reused, seed_seconds=seeded.seconds,
            seed_phases=seeded.phases,
        )
        self.sets.append(set_report)

        data_path = self.results_dir / f"data-{dataset.name}.lua"
        wrk.write_data_file(
            data_path, dataset, wrk.make_tokens(self.secret, dataset.users),
            seed.user_tag_names(url),
        )
        scripts = self.pgbench_scripts(dataset, environ) if self.pgbench_wanted() else {}
        set_report.pgbench_scripts = {name: str(path) for name, path in scripts.items()}

        log_path = self.results_dir / f"gunicorn-{dataset.name}.log"
        set_report.gunicorn_log = str(log_path)
        gunicorn = server.Gunicorn(environ, self.options.port or server.free_port(), log_path)
        progress(f"{dataset.name}: starting gunicorn ({self.settings['workers']} workers x "
                 f"{self.settings['threads']} threads, {self.settings['worker_class']})")
        gunicorn.start()
        try:
            if options.warmup:
                progress(f"{dataset.name}: warm-up {options.warmup} s")
                self.wrk(dataset, gunicorn, "warmup", min(options.connections), options.warmup,
                         data_path)
            for scenario in options.scenarios:
                for connections in options.connections:
                    row = self.measure(dataset, gunicorn, scenario, connections,
                                       options.duration, data_path)
                    if scenario in scripts:
                        self.compare(row, url, scripts[scenario])
            if ("mixed" in options.scenarios and options.mixed_connections
                    and dataset.name == options.mixed_set):
                for scenario in ("mixed", "users"):
                    self.measure(dataset, gunicorn, scenario, options.mixed_connections,
                                 options.mixed_duration, data_path)
            set_report.peak_rss_mb = gunicorn.peak_rss_mb()
        finally:
            gunicorn.stop()

    def wrk(self, dataset: DataSet, gunicorn: server.Gunicorn, scenario: str,
            connections: int, duration: int, data_path: Path) -> wrk.WrkResult:
        return wrk.run(
            self.wrk_path, scenario, gunicorn.base_url, connections, duration,
            data_path=data_path, timeout=self.options.timeout, threads=self.options.wrk_threads,
            output_path=self.results_dir / f"wrk-{scenario}-{dataset.name}-c{connections}.txt",
            think_ms=self.options.think_ms,
        )

    def measure(self, dataset: DataSet, gunicorn: server.Gunicorn, scenario: str,
                connections: int, duration: int, data_path: Path) -> report.Row:
        progress(f"{dataset.name}: {scenario} at {connections} connections for {duration} s")
        load = loadavg()
        server_pid = gunicorn.process.pid if gunicorn.process else None
        before = machine.snapshot(server_pid)
        result = self.wrk(dataset, gunicorn, scenario, connections, duration, data_path)
        cpu = machine.usage(before, machine.snapshot(server_pid))
        progress(f"  {result.rps:,.1f} req/s, p95 {result.p95_ms:.1f} ms, "
                 f"{result.error_count} errors" + (f"; CPU: bench {cpu.bench:.0f}%, postgres "
                 f"{cpu.postgres:.0f}%, other {cpu.other:.0f}%" if cpu else ""))
        row = report.Row(set=dataset.name, wrk=result, loadavg=load, cpu=cpu)
        self.rows.append(row)
        return row

    # ------------------------------------------------------------ pgbench

    def pgbench_wanted(self) -> bool:
        return (self.options.pgbench and self.pgbench_path is not None
                and any(name in self.options.scenarios for name in PGBENCH_SCENARIOS))

    def pgbench_scripts(self, dataset: DataSet, environ: dict[str, str]) -> dict[str, Path]:
        """Record what one list and one get request send (user 1, its task 1), and write the
        pgbench scripts made from it."""
        token = wrk.make_tokens(self.secret, 1)[0]
        headers = {"Authorization": f"Bearer {token}"}
        user_path = f"/api/{user_id(1)}/tasks"
        recorded = {
            "list": sqlcapture.request_statements(environ, user_path, headers),
            "get": sqlcapture.request_statements(
                environ, f"{user_path}/{task_id(1, 1, dataset.tasks_per_user)}", headers
            ),
        }
        texts = {
            "list": pgbench.list_script(recorded["list"], dataset, 1),
            "get": pgbench.get_script(recorded["get"], dataset, 1, 1),
        }
        paths = {}
        for name in PGBENCH_SCENARIOS:
            if name in self.options.scenarios:
                path = self.results_dir / f"pgbench-{name}-{dataset.name}.sql"
                path.write_text(texts[name])
                paths[name] = path
        return paths

    def compare(self, row: report.Row, url: str, script: Path) -> None:
        connections = row.wrk.connections
        free = pg.free_connection_slots(self.server_url)
        if connections > free - CONNECTION_MARGIN:
            row.pgbench_note = (
                f"no pgbench: {connections} connections do not fit, the server has {free}"
                " free (max_connections)"
            )
            progress(f"  {row.pgbench_note}")
            return
        assert self.pgbench_path is not None
        progress(f"  pgbench {row.wrk.scenario} at {connections} connections")
        before = machine.snapshot(None)
        row.pgbench = pgbench.run(
            self.pgbench_path, url, script, connections, self.options.duration,
            self.options.pgbench_threads,
            self.results_dir / f"pgbench-{row.wrk.scenario}-{row.set}-c{connections}.txt",
        )
        row.pgbench_cpu = machine.usage(before, machine.snapshot(None))
        tps = row.pgbench.tps
        progress(f"  pgbench {tps:,.1f} tps" if tps else f"  pgbench failed: see {script}")

    # ------------------------------------------------------------ report

    def header(self, started: datetime, load_start: tuple[float, float, float],
               load_end: tuple[float, float, float]) -> list[str]:
        options, settings = self.options, self.settings
        sets = ", ".join(
            f"{s.name} = {s.users:,} users x {s.tasks_per_user:,} tasks ({s.database}, "
            + ("reused, created tasks of earlier runs deleted)" if s.reused
               else f"seeded in {s.seed_seconds:.1f} s)")
            for s in self.sets
        )
        mixed = (f"; mixed also at {options.mixed_connections} connections for "
                 f"{options.mixed_duration} s on {options.mixed_set}, then users (the same,"
                 f" with {options.think_ms[0]}-{options.think_ms[1]} ms before each of a"
                 f" connection's requests)"
                 if options.mixed_connections and "mixed" in options.scenarios else "")
        if self.pgbench_wanted():
            pgbench_line = (
                f"pgbench: --protocol=simple -j {options.pgbench_threads}, same connections and"
                " duration, the SQL one request sends (scripts in the results directory);"
                " ratio = req/s / pgbench tps"
            )
        else:
            pgbench_line = "pgbench: not run" + ("" if self.pgbench_path else " (not found)")
        return [
            f"todo-api bench, {started:%Y-%m-%d %H:%M} UTC, commit {git_revision()}"
            + (" (SMOKE: tiny data, seconds-long runs)" if options.smoke else ""),
            f"service: gunicorn -c gunicorn.conf.py wsgi:app, APP_ENV=production, "
            f"{settings.get('workers')} x {settings.get('worker_class')} workers, "
            f"{settings.get('threads')} threads each",
            "rate limiting OFF (RATELIMIT_ENABLED=false): the bench measures the service, "
            "not the limiter; JSON request log on, written to a file",
            f"load: wrk -t{options.wrk_threads} --timeout {options.timeout}s, "
            f"{options.duration} s per scenario after {options.warmup} s warm-up{mixed}",
            pgbench_line,
            f"data: {sets}",
            f"machine: {os.cpu_count()} CPUs ({platform.machine()}), load average "
            f"{format_load(load_start)} at start, {format_load(load_end)} at end "
            f"(counts the bench's own threads); PostgreSQL {pg.server_version(self.server_url)}",
            report.outside_load(self.rows),
            f"results: {self.results_dir}",
        ]

    def meta(self, started: datetime, load_start: tuple[float, float, float],
             load_end: tuple[float, float, float]) -> dict[str, Any]:
        return {
            "started_at": started.isoformat(),
            "commit": git_revision(),
            "smoke": self.options.smoke,
            "options": dict(vars(self.options)),
            "gunicorn": self.settings,
            "rate_limiting": False,
            "cpus": os.cpu_count(),
            "loadavg_start": list(load_start),
            "loadavg_end": list(load_end),
            "postgresql": pg.server_version(self.server_url),
            "database_server": pg.redacted(self.server_url),
        }


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    raise_open_files_limit()
    wrk_path = wrk.find_wrk()
    if wrk_path is None:
        print("bench: wrk is not installed (Debian package wrk; `make system-deps`)",
              file=sys.stderr)
        return 2
    reason = pg.unavailable_reason(pg.server_url())
    if reason is not None:
        print(f"bench: {reason}; set BENCH_DATABASE_URL", file=sys.stderr)
        return 2
    pgbench_path = pgbench.find_pgbench() if options.pgbench else None
    if options.pgbench and pgbench_path is None:
        progress("pgbench not found (PGBENCH, PATH, /usr/lib/postgresql/*/bin): no comparison")

    bench = Bench(options, wrk_path, pgbench_path)
    started, load_start = datetime.now(UTC), loadavg()
    datasets = data_sets(options.sets, options.smoke, options.db_prefix)
    try:
        for dataset in datasets:
            bench.run_set(dataset)
    finally:
        if options.drop_after:
            for dataset in datasets:
                pg.drop_database(bench.server_url, dataset.database)
    load_end = loadavg()

    report.print_report(bench.header(started, load_start, load_end), bench.rows, bench.sets,
                        sys.stdout)
    meta = bench.meta(started, load_start, load_end)
    for path in [bench.results_dir / "results.json", options.json_path]:
        if path is not None:
            report.write_json(path, meta, bench.rows, bench.sets)
    if options.smoke:
        failures = [row for row in bench.rows if row.wrk.error_count
                    or (row.pgbench and (row.pgbench.exit_code or not row.pgbench.tps))]
        if failures:
            print(f"bench: {len(failures)} smoke run(s) had errors (see Notes)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
