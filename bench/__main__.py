"""`python -m bench`: seed, serve with gunicorn, load with wrk, compare with pgbench, report.

Per data set: prepare the database (bench.seed), record the SQL of one list and one get
request and turn it into pgbench scripts (bench.sqlcapture, bench.pgbench) and the floor's
SQL file (bench.floor), start gunicorn (bench.server) for the service and, on another port
with the same gunicorn.conf.py, for the floor; warm up, then run each scenario at each
connection count with wrk (bench.wrk), reads before writes so the reads see the data as
seeded (and the changes feed's cursors, computed when the data file is written, still stand
where they were; `batch`, if the service has the endpoint, runs after `create` and the tasks
it created are deleted after its runs). `list` and `get` alternate service and floor runs
(only one is loaded at a time), then pgbench runs their SQL at the same concurrency. The
high-concurrency runs come last, on one set: `mixed` at each --mixed-connections, then
`users` (mixed's requests, each connection pausing before each request like a person) at
each --users-connections, each worker's memory read after each; then the workers' peak RSS
is read and gunicorn stopped. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor, machine, pg, pgbench, report, seed, server, sqlcapture, wrk
from bench.datasets import DataSet, data_sets, task_id, user_id
from bench.options import FLOOR_SCENARIOS, Options, parse
from bench.wrk import WrkResult

ROOT = Path(__file__).resolve().parent.parent
PGBENCH_SCENARIOS = ("list", "get")
FLOOR_APP = "bench.floor:create_app()"
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


def _counts(numbers: list[int]) -> str:
    return ", ".join(str(number) for number in numbers)


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
        self.servers: list[server.Gunicorn] = []  # running: their CPU counts as the bench's
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
            seed.user_tag_names(url), self.cursors(dataset, url, set_report),
        )
        recorded = (self.record_sql(dataset, environ)
                    if self.pgbench_wanted() or self.floor_wanted() else {})
        scripts = self.pgbench_scripts(dataset, recorded) if self.pgbench_wanted() else {}
        set_report.pgbench_scripts = {name: str(path) for name, path in scripts.items()}

        log_path = self.results_dir / f"gunicorn-{dataset.name}.log"
        set_report.gunicorn_log = str(log_path)
        gunicorn = server.Gunicorn(environ, self.options.port or server.free_port(), log_path)
        floor_server = self.floor_server(dataset, environ, recorded, set_report)
        self.servers = [gunicorn] + ([floor_server] if floor_server else [])
        progress(f"{dataset.name}: starting gunicorn ({self.settings['workers']} workers x "
                 f"{self.settings['threads']} threads, {self.settings['worker_class']})")
        last_run = ""
        try:
            gunicorn.start()
            workers_at_start = gunicorn.worker_pids()
            if floor_server is not None:
                progress(f"{dataset.name}: starting the floor's gunicorn ({FLOOR_APP})")
                floor_server.start()
            if options.warmup:
                progress(f"{dataset.name}: warm-up {options.warmup} s")
                self.wrk(dataset, gunicorn, "warmup", min(options.connections), options.warmup,
                         data_path)
                if floor_server is not None:
                    for scenario in FLOOR_SCENARIOS:
                        self.wrk(dataset, floor_server, scenario, min(options.connections),
                                 max(1, options.warmup // 2), data_path, "-floor-warmup")
            for scenario in options.scenarios:
                if scenario not in wrk.SCENARIOS:
                    continue  # high concurrency only
                if scenario == "batch":
                    missing = self.batch_missing(gunicorn)
                    if missing is not None:
                        set_report.skipped["batch"] = missing
                        progress(f"{dataset.name}: batch skipped: {missing}")
                        continue
                    batch_started = datetime.now(UTC)
                for connections in options.connections:
                    row = self.measure(dataset, gunicorn, scenario, connections,
                                       options.duration, data_path)
                    last_run = f"{scenario} at {connections} connections"
                    if floor_server is not None and scenario in FLOOR_SCENARIOS:
                        self.alternate(row, dataset, gunicorn, floor_server, data_path)
                    if scenario in scripts:
                        self.compare(row, url, scripts[scenario])
                if scenario == "batch":
                    # Up to thousands of tasks per user: the scenarios after batch would
                    # otherwise list, search and count over far more data than before it.
                    started = time.monotonic()
                    self.wait_until_idle(gunicorn, url)
                    deleted = seed.delete_created(url, batch_started)
                    progress(f"{dataset.name}: deleted the {deleted:,} tasks batch created "
                             f"({time.monotonic() - started:.1f} s)")
            if floor_server is not None:
                floor_server.stop()
                self.servers = [gunicorn]
            if dataset.name == options.mixed_set:
                for scenario, counts in (("mixed", options.mixed_connections),
                                         ("users", options.users_connections)):
                    if scenario not in options.scenarios:
                        continue
                    for connections in counts:
                        row = self.measure(dataset, gunicorn, scenario, connections,
                                           options.mixed_duration, data_path)
                        row.high_concurrency = True
                        last_run = f"{scenario} at {connections} connections"
                        row.worker_memory_mb = gunicorn.worker_memory_mb()
            set_report.peak_rss_mb = gunicorn.peak_rss_mb()
            set_report.peak_rss_after = last_run
            set_report.workers_replaced = gunicorn.worker_pids() != workers_at_start
        finally:
            gunicorn.stop()
            if floor_server is not None:
                floor_server.stop()
            self.servers = []

    def cursors(self, dataset: DataSet, url: str, set_report: report.SetReport
                ) -> dict[int, wrk.Cursors]:
        """Each user's changes-feed cursors, from where the feed stands now (read before any
        write of this run: the scenarios using them run before the writes)."""
        positions = seed.change_positions(url, wrk.CHANGES_BEHIND)
        missing = [n for n in range(1, dataset.users + 1) if n not in positions]
        if missing:
            raise RuntimeError(f"{dataset.database}: no users row for user(s) {missing[:5]}")
        latest = [positions[n].latest for n in positions]
        answers = [positions[n].tasks_after for n in positions]
        set_report.change_numbers = {
            "latest_min": min(latest), "latest_max": max(latest),
            "changes100_tasks_min": min(answers), "changes100_tasks_max": max(answers),
        }
        progress(f"{dataset.name}: change numbers: users at {min(latest):,}-{max(latest):,}; "
                 f"changes100 cursors {wrk.CHANGES_BEHIND} task changes back answer "
                 f"{min(answers)}-{max(answers)} tasks")
        return wrk.user_cursors(positions)

    def wait_until_idle(self, gunicorn: server.Gunicorn, url: str, limit: float = 60) -> None:
        """Until the requests wrk left behind are done: when wrk stops, the service still
        has the ones it had read (queued for its threads, or waiting on a lock). Idle: its
        CPU stands still for a quarter of a second and its database has no busy session."""
        pid = gunicorn.process.pid if gunicorn.process is not None else None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = machine.server_cpu_seconds(pid)
            time.sleep(0.25)
            after = machine.server_cpu_seconds(pid)
            busy_cpu = before is not None and after is not None and after - before > 0.01
            if not busy_cpu and pg.busy_sessions(url) == 0:
                return
        progress(f"  the service was still busy after {limit:.0f} s; going on")

    def batch_missing(self, gunicorn: server.Gunicorn) -> str | None:
        """Why `batch` cannot run (the endpoint is being built on another branch), or None.
        The probe is a batch of no operations: 400 from the endpoint, nothing written."""
        token = wrk.make_tokens(self.secret, 1)[0]
        path = f"/api/{user_id(1)}/tasks/batch"
        probe = urllib.request.Request(
            gunicorn.base_url + path, data=json.dumps({"operations": []}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(probe, timeout=10) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            status = error.code
        if status in (400, 422):
            return None
        if status in (404, 405):
            return (f"the service has no batch endpoint (a probe POST {path} with no "
                    f"operations answered {status}; expected 400)")
        return f"a probe POST {path} with no operations answered {status}, not 400"

    def wrk(self, dataset: DataSet, gunicorn: server.Gunicorn, scenario: str,
            connections: int, duration: int, data_path: Path, suffix: str = ""
            ) -> wrk.WrkResult:
        name = f"wrk-{scenario}-{dataset.name}-c{connections}{suffix}.txt"
        return wrk.run(
            self.wrk_path, scenario, gunicorn.base_url, connections, duration,
            data_path=data_path, timeout=self.options.timeout, threads=self.options.wrk_threads,
            output_path=self.results_dir / name, think_ms=self.options.think_ms,
        )

    def load(self, dataset: DataSet, gunicorn: server.Gunicorn, scenario: str,
             connections: int, duration: int, data_path: Path, suffix: str = "", who: str = ""
             ) -> tuple[WrkResult, machine.CpuUsage | None]:
        """One wrk run, with the machine's CPU split over it."""
        progress(f"{dataset.name}: {scenario}{who} at {connections} connections for "
                 f"{duration} s")
        pids = [s.process.pid for s in self.servers if s.process is not None]
        loaded = gunicorn.process.pid if gunicorn.process is not None else None
        before = machine.snapshot(*pids)
        server_before = machine.server_cpu_seconds(loaded)
        result = self.wrk(dataset, gunicorn, scenario, connections, duration, data_path, suffix)
        server_after = machine.server_cpu_seconds(loaded)
        cpu = machine.usage(before, machine.snapshot(*pids))
        if server_before is not None and server_after is not None:
            result.server_cpu_seconds = server_after - server_before
        per_request = result.server_cpu_us
        progress(f"  {result.rps:,.1f} req/s, p95 {result.p95_ms:.1f} ms, "
                 f"{result.error_count} errors"
                 + (f", server CPU {per_request:,.0f} us/request" if per_request else "")
                 + (f"; CPU: bench {cpu.bench:.0f}%, postgres "
                    f"{cpu.postgres:.0f}%, other {cpu.other:.0f}%" if cpu else ""))
        return result, cpu

    def measure(self, dataset: DataSet, gunicorn: server.Gunicorn, scenario: str,
                connections: int, duration: int, data_path: Path) -> report.Row:
        load = loadavg()
        result, cpu = self.load(dataset, gunicorn, scenario, connections, duration, data_path)
        row = report.Row(set=dataset.name, wrk=result, loadavg=load, cpu=cpu)
        self.rows.append(row)
        return row

    # ------------------------------------------------------------ the floor

    def floor_wanted(self) -> bool:
        return self.options.floor_rounds > 0 and any(
            name in self.options.scenarios for name in FLOOR_SCENARIOS
        )

    def floor_server(self, dataset: DataSet, environ: dict[str, str],
                     recorded: dict[str, list[str]], set_report: report.SetReport
                     ) -> server.Gunicorn | None:
        """The floor under the service's gunicorn.conf.py and environment, on another port,
        with the SQL just recorded from the service."""
        if not self.floor_wanted():
            return None
        sql_path = self.results_dir / f"floor-sql-{dataset.name}.json"
        floor.write_sql_file(sql_path, recorded, user_id(1),
                             task_id(1, 1, dataset.tasks_per_user))
        log_path = self.results_dir / f"gunicorn-floor-{dataset.name}.log"
        set_report.floor_sql, set_report.floor_log = str(sql_path), str(log_path)
        floor_environ = {**environ, floor.SQL_ENV: str(sql_path),
                         floor.POOL_SIZE_ENV: str(self.settings["threads"])}
        return server.Gunicorn(floor_environ, server.free_port(), log_path, FLOOR_APP)

    def alternate(self, row: report.Row, dataset: DataSet, service: server.Gunicorn,
                  floor_server: server.Gunicorn, data_path: Path) -> None:
        """After the service's run (`row`): floor, then service and floor again, for
        --floor-rounds rounds in all, so noise and drift hit both alike."""
        scenario, connections = row.wrk.scenario, row.wrk.connections
        duration = self.options.duration
        for round_number in range(1, self.options.floor_rounds + 1):
            if round_number > 1:
                result, _ = self.load(dataset, service, scenario, connections, duration,
                                      data_path, f"-service{round_number}", " (service)")
                row.service_repeats.append(result)
            result, _ = self.load(dataset, floor_server, scenario, connections, duration,
                                  data_path, f"-floor{round_number}", " (floor)")
            row.floor.append(result)
        progress(f"  service / floor: {row.floor_ratio:.2f}")

    # ------------------------------------------------------------ pgbench

    def pgbench_wanted(self) -> bool:
        return (self.options.pgbench and self.pgbench_path is not None
                and any(name in self.options.scenarios for name in PGBENCH_SCENARIOS))

    def record_sql(self, dataset: DataSet, environ: dict[str, str]) -> dict[str, list[str]]:
        """What one list and one get request send (user 1, its task 1), recorded on the wire:
        the source of the pgbench scripts and of the floor's SQL."""
        token = wrk.make_tokens(self.secret, 1)[0]
        headers = {"Authorization": f"Bearer {token}"}
        user_path = f"/api/{user_id(1)}/tasks"
        return {
            "list": sqlcapture.request_statements(environ, user_path, headers),
            "get": sqlcapture.request_statements(
                environ, f"{user_path}/{task_id(1, 1, dataset.tasks_per_user)}", headers
            ),
        }

    def pgbench_scripts(self, dataset: DataSet, recorded: dict[str, list[str]]
                        ) -> dict[str, Path]:
        """The pgbench scripts made from the recorded SQL, written to the results."""
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
        high = []
        if options.mixed_connections and "mixed" in options.scenarios:
            high.append(f"mixed at {_counts(options.mixed_connections)} connections")
        if options.users_connections and "users" in options.scenarios:
            high.append(f"users (mixed's requests, {options.think_ms[0]}-"
                        f"{options.think_ms[1]} ms before each of a connection's requests) at"
                        f" {_counts(options.users_connections)} connections")
        mixed = (f"; then {' and '.join(high)}, {options.mixed_duration} s each, on "
                 f"{options.mixed_set}" if high else "")
        if self.pgbench_wanted():
            pgbench_line = (
                f"pgbench: --protocol=simple -j {options.pgbench_threads}, same connections and"
                " duration, the SQL one request sends (scripts in the results directory);"
                " ratio = req/s / pgbench tps"
            )
        else:
            reason = (" (--no-pgbench)" if not options.pgbench
                      else "" if self.pgbench_path else " (not found)")
            pgbench_line = "pgbench: not run" + reason
        if self.floor_wanted():
            floor_line = (
                f"floor: {FLOOR_APP} under the same gunicorn.conf.py and environment, its "
                f"psycopg2 pool {settings.get('threads')} connections per worker; list and get "
                f"alternate service and floor runs, {options.floor_rounds} of each; svc/floor ="
                " the service's mean req/s / the floor's"
            )
        else:
            floor_line = "floor: not run"
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
            floor_line,
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
        failures = [row for row in bench.rows
                    if any(run.error_count for run in [*row.service_runs, *row.floor])
                    or (row.pgbench and (row.pgbench.exit_code or not row.pgbench.tps))]
        if failures:
            print(f"bench: {len(failures)} smoke run(s) had errors (see Notes)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
