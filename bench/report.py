"""The printed table (and the JSON file) of a bench run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, TextIO

from bench.machine import CpuUsage
from bench.pgbench import PgbenchResult
from bench.wrk import BATCH_SIZE, CHANGES_BEHIND, WrkResult

COLUMNS = ("scenario", "set", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
           "pgbench tps", "ratio", "floor req/s", "svc/floor", "other cpu")


@dataclass
class Row:
    set: str
    wrk: WrkResult
    pgbench: PgbenchResult | None = None
    pgbench_note: str | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: CpuUsage | None = None
    pgbench_cpu: CpuUsage | None = None
    # The floor's runs, and the service's runs after the first (`wrk`), alternating:
    # service (wrk), floor[0], service_repeats[0], floor[1], ...
    floor: list[WrkResult] = field(default_factory=list)
    service_repeats: list[WrkResult] = field(default_factory=list)
    # A run at --mixed-connections / --users-connections, after the others.
    high_concurrency: bool = False
    # Each worker's VmRSS and VmHWM right after this run (the high-concurrency runs).
    worker_memory_mb: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.wrk.scenario}/{self.set}/{self.wrk.connections}"

    @property
    def ratio(self) -> float | None:
        if self.pgbench is None or not self.pgbench.tps:
            return None
        return self.wrk.rps / self.pgbench.tps

    @property
    def service_runs(self) -> list[WrkResult]:
        return [self.wrk, *self.service_repeats]

    @property
    def floor_rps(self) -> float | None:
        return mean(run.rps for run in self.floor) if self.floor else None

    @property
    def floor_ratio(self) -> float | None:
        """The service's mean req/s over its runs alternating with the floor's, as a fraction
        of the floor's mean req/s."""
        if not self.floor_rps:
            return None
        return mean(run.rps for run in self.service_runs) / self.floor_rps

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.set,
            **self.wrk.as_dict(),
            "pgbench": self.pgbench.as_dict() if self.pgbench else None,
            "pgbench_note": self.pgbench_note,
            "ratio": self.ratio,
            "floor": {
                "rps": self.floor_rps,
                "ratio": self.floor_ratio,
                "service_rps": [run.rps for run in self.service_runs],
                "runs": [run.as_dict() for run in self.floor],
                "service_repeats": [run.as_dict() for run in self.service_repeats],
            } if self.floor else None,
            "high_concurrency": self.high_concurrency,
            "worker_memory_mb": self.worker_memory_mb or None,
            "loadavg_at_start": list(self.loadavg),
            "cpu_percent": asdict(self.cpu) if self.cpu else None,
            "pgbench_cpu_percent": asdict(self.pgbench_cpu) if self.pgbench_cpu else None,
        }


@dataclass
class SetReport:
    name: str
    users: int
    tasks_per_user: int
    database: str
    reused: bool
    seed_seconds: float
    seed_phases: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    pgbench_scripts: dict[str, str] = field(default_factory=dict)
    gunicorn_log: str = ""
    floor_sql: str = ""
    floor_log: str = ""
    # What the peak RSS covers: the set's runs up to the last one (e.g. "users at 5000
    # connections"), and whether a worker was replaced meanwhile (its peak is then shorter).
    peak_rss_after: str = ""
    workers_replaced: bool = False
    # Scenarios not run, and why (`batch` when the service has no batch endpoint).
    skipped: dict[str, str] = field(default_factory=dict)
    # Where the users' changes feeds stood when the data file was written: the least and
    # greatest latest change number, and how many tasks a changes100 answer holds.
    change_numbers: dict[str, int] = field(default_factory=dict)


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row]) -> str:
    cells = [
        (
            row.wrk.scenario,
            row.set,
            str(row.wrk.connections),
            _cell(row.wrk.rps),
            _cell(row.wrk.p50_ms),
            _cell(row.wrk.p95_ms),
            _cell(row.wrk.p99_ms),
            str(row.wrk.error_count),
            _cell(row.pgbench.tps if row.pgbench else None),
            _cell(row.ratio, 2),
            _cell(row.floor_rps),
            _cell(row.floor_ratio, 2),
            "-" if row.cpu is None else f"{row.cpu.other:.0f}%",
        )
        for row in rows
    ]
    widths = [max(len(column), *(len(c[i]) for c in cells)) for i, column in enumerate(COLUMNS)]
    left = {0, 1}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            value.ljust(width) if i in left else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(COLUMNS), rule, *(line(c) for c in cells)])


def outside_load(rows: list[Row]) -> str:
    """One line on how much CPU others used while we measured (the `other cpu` column)."""
    others = [row.cpu.other for row in rows if row.cpu is not None]
    postgres = [row.cpu.postgres for row in rows if row.cpu is not None]
    if not others:
        return "outside load: not measured (needs Linux /proc)"
    return (
        f"outside load: processes other than the bench and PostgreSQL used {mean(others):.0f}%"
        f" of the machine's CPU on average during the wrk runs (max {max(others):.0f}%: the "
        f"`other cpu` column); PostgreSQL {mean(postgres):.0f}% (max {max(postgres):.0f}%, "
        "including other databases' queries)"
    )


def notes(rows: list[Row]) -> list[str]:
    """Error breakdowns and why a pgbench comparison is missing."""
    lines = []
    for row in rows:
        label = row.label
        runs = [("", row.wrk), *((" (service, again)", run) for run in row.service_repeats),
                *((" (floor)", run) for run in row.floor)]
        for which, run in runs:
            if run.error_count:
                e = run.errors
                expected = run.expected_status
                failing = {code: n for code, n in run.statuses.items()
                           if (code != str(expected) if expected else not code.startswith("2"))}
                lines.append(
                    f"{label}{which}: {run.error_count} errors: connect {e['connect']}, read "
                    f"{e['read']}, write {e['write']}, timeout {e['timeout']}, "
                    + (f"not {expected}" if expected else "non-2xx")
                    + f" {e['unexpected']} {failing or ''}".rstrip()
                )
        if row.pgbench_note:
            lines.append(f"{label}: {row.pgbench_note}")
        elif row.pgbench and (row.pgbench.exit_code or row.pgbench.failed):
            lines.append(
                f"{label}: pgbench exit {row.pgbench.exit_code}, {row.pgbench.failed} failed"
                " transactions"
            )
    return lines


def skipped_lines(sets: list[SetReport]) -> list[str]:
    return [f"{scenario}/{report.name}: skipped: {reason}"
            for report in sets for scenario, reason in report.skipped.items()]


def change_number_lines(sets: list[SetReport]) -> list[str]:
    lines = []
    for report in sets:
        c = report.change_numbers
        if not c:
            continue
        lines.append(
            f"  {report.name}: users at change numbers {c['latest_min']:,}-{c['latest_max']:,};"
            f" changes: a cursor at the user's latest change (nothing new); changes100: "
            f"{CHANGES_BEHIND} task changes back, answers of {c['changes100_tasks_min']}-"
            f"{c['changes100_tasks_max']} tasks"
        )
    return lines


def floor_lines(rows: list[Row]) -> list[str]:
    """Each service/floor alternation, run by run."""
    lines = []
    for row in rows:
        if not row.floor:
            continue
        runs = [f"service {row.wrk.rps:,.1f}"]
        for index, floor in enumerate(row.floor):
            runs.append(f"floor {floor.rps:,.1f}")
            if index < len(row.service_repeats):
                runs.append(f"service {row.service_repeats[index].rps:,.1f}")
        floor_p95 = ", ".join(f"{run.p95_ms:.1f}" for run in row.floor)
        errors = sum(run.error_count for run in row.floor)
        lines.append(
            f"  {row.label}: {' -> '.join(runs)} req/s: svc/floor {row.floor_ratio:.2f}"
            f" (floor p95 {floor_p95} ms, {errors} errors)"
        )
    return lines


def rss_lines(sets: list[SetReport]) -> list[str]:
    lines = []
    for report in sets:
        workers = {k: v for k, v in report.peak_rss_mb.items() if k.startswith("worker")}
        parts = [f"{name} {mb:.1f} MB" for name, mb in workers.items()]
        master = report.peak_rss_mb.get("master")
        suffix = f" (master {master:.1f} MB)" if master is not None else ""
        covers = f", after {report.peak_rss_after}" if report.peak_rss_after else ""
        lines.append(f"  {report.name}{covers}: {', '.join(parts) or 'n/a'}{suffix}")
        if report.workers_replaced:
            lines.append(f"  {report.name}: a worker was replaced during the set; its peak "
                         "covers only the time since it started")
    return lines


def memory_lines(rows: list[Row]) -> list[str]:
    """Each worker's memory right after each high-concurrency run."""
    return [
        f"  {row.label}: " + ", ".join(
            f"{name} {memory['rss']:.1f} MB (peak so far {memory['peak']:.1f} MB)"
            for name, memory in row.worker_memory_mb.items()
        )
        for row in rows if row.worker_memory_mb
    ]


# ------------------------------------------------------------ issue 11's targets

USERS_P95_MS, USERS_P99_MS = 100, 250
PEAK_RSS_MB = 150
FLOOR_TARGETS = {"get": 0.75, "list": 0.85}
OF_GET_TARGETS = {"create": 0.6, "tags": 0.9}
OF_GET_CONNECTIONS = 16


@dataclass
class Target:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "n/a"}[self.met]


def _all_met(values: list[float], threshold: float) -> bool | None:
    return all(value >= threshold for value in values) if values else None


def targets(rows: list[Row], sets: list[SetReport]) -> list[Target]:
    """One line per target of issue 11 ("Capacity on one machine"), from this run's rows."""
    result = []
    for row in rows:
        if row.wrk.scenario != "users" or not row.high_concurrency:
            continue
        w = row.wrk
        result.append(Target(
            f"users at {w.connections} connections ({w.duration} s): 0 errors, p95 < "
            f"{USERS_P95_MS} ms, p99 < {USERS_P99_MS} ms",
            f"{w.error_count} errors, p95 {w.p95_ms:,.1f} ms, p99 {w.p99_ms:,.1f} ms"
            f" ({row.set})",
            w.error_count == 0 and w.p95_ms < USERS_P95_MS and w.p99_ms < USERS_P99_MS,
        ))
    if not any(t.target.startswith("users") for t in result):
        result.append(Target(f"users at high concurrency (issue: 1000 and 5000 connections, 60 s):"
                             f" 0 errors, p95 < {USERS_P95_MS} ms, p99 < {USERS_P99_MS} ms",
                             "not run", None))
    for report in sets:
        workers = [mb for name, mb in report.peak_rss_mb.items() if name.startswith("worker")]
        if report.peak_rss_after.startswith("users") and workers:
            result.append(Target(
                f"peak RSS per worker after {report.peak_rss_after} < {PEAK_RSS_MB} MB",
                f"max {max(workers):.1f} MB ({report.name}"
                + (", a worker was replaced" if report.workers_replaced else "") + ")",
                max(workers) < PEAK_RSS_MB and not report.workers_replaced,
            ))
    if not any(t.target.startswith("peak RSS") for t in result):
        result.append(Target(f"peak RSS per worker after the users runs < {PEAK_RSS_MB} MB",
                             "no users run", None))
    for row in rows:
        if row.wrk.scenario != "mixed" or not row.high_concurrency:
            continue
        w = row.wrk
        result.append(Target(
            f"mixed at {w.connections} never-pausing connections ({w.duration} s): 0 errors,"
            " best throughput",
            f"{w.rps:,.1f} req/s, p95 {w.p95_ms:,.1f} ms, p99 {w.p99_ms:,.1f} ms, "
            f"{w.error_count} errors ({row.set})",
            w.error_count == 0,
        ))
    if not any(t.target.startswith("mixed") for t in result):
        result.append(Target("mixed at high concurrency (issue: 1000 never-pausing connections,"
                             " 60 s): 0 errors, best throughput", "not run", None))
    for scenario, threshold in FLOOR_TARGETS.items():
        compared = [row for row in rows if row.wrk.scenario == scenario and row.floor_ratio]
        result.append(Target(
            f"{scenario} / floor >= {threshold}",
            ", ".join(f"{row.set}/{row.wrk.connections} {row.floor_ratio:.2f}"
                      for row in compared) or "floor not run",
            _all_met([row.floor_ratio or 0.0 for row in compared], threshold),
        ))
    for scenario, threshold in OF_GET_TARGETS.items():
        values, parts = [], []
        for report in sets:
            by_connections = {
                (row.wrk.scenario, row.wrk.connections): row.wrk.rps
                for row in rows if row.set == report.name and not row.high_concurrency
            }
            common = sorted(c for s, c in by_connections if s == scenario
                            and ("get", c) in by_connections)
            if not common:
                continue
            connections = OF_GET_CONNECTIONS if OF_GET_CONNECTIONS in common else common[0]
            get_rps = by_connections[("get", connections)]
            if not get_rps:
                continue
            value = by_connections[(scenario, connections)] / get_rps
            values.append(value)
            parts.append(f"{report.name}/{connections} {value:.2f}")
        result.append(Target(
            f"{scenario} / get >= {threshold} (req/s, same set, at {OF_GET_CONNECTIONS} "
            "connections or the fewest run)",
            ", ".join(parts) or f"{scenario} or get not run",
            _all_met(values, threshold),
        ))
    return result


# ------------------------------------------------------------ issue 15's targets


@dataclass(frozen=True)
class SameRunTarget:
    """`scenario`'s throughput at least `threshold` times `base`'s, same set and connections.
    A request of `scenario` carries `per_request` items (batch: its creates), counted in
    its throughput: tasks/s against the creates' req/s."""

    scenario: str
    base: str
    threshold: float
    target: str
    per_request: int = 1


ISSUE_15_TARGETS = (
    SameRunTarget("poll", "list", 3.0,
                  "poll / list >= 3 (req/s; a 304 poll at most 30% of a list request's CPU)"),
    SameRunTarget("changes", "get", 1.0, "changes (nothing new) / get >= 1 (req/s)"),
    SameRunTarget("changes100", "list", 1 / 1.2,
                  "changes100 / list >= 1/1.2 = 0.83 (req/s; 100 changes cost at most 1.2x a "
                  "list page)"),
    SameRunTarget("batch", "create", 10.0,
                  f"batch tasks/s (req/s x {BATCH_SIZE}) / create req/s >= 10", BATCH_SIZE),
)


def _service_figures(row: Row) -> tuple[float, float | None, str]:
    """A row's req/s and server CPU per request, as the mean of the service's runs (list and
    get have one per round with the floor), and how many runs that is."""
    runs = row.service_runs
    cpu = [run.server_cpu_us for run in runs if run.server_cpu_us is not None]
    return (mean(run.rps for run in runs), mean(cpu) if cpu else None,
            f" (mean of {len(runs)} runs)" if len(runs) > 1 else "")


def same_run_target(goal: SameRunTarget, rows: list[Row], sets: list[SetReport]) -> Target:
    """At every connection count both scenarios ran, in each set: met if all are. A row's
    figures are the mean of the service's runs (list and get alternate with the floor). Each
    part also gives the server's CPU per item against the base's per request: the cost
    ratio, which the target bounds too (at most 1 / threshold)."""
    values, parts = [], []
    for report in sets:
        by_connections = {
            (row.wrk.scenario, row.wrk.connections): row
            for row in rows if row.set == report.name and not row.high_concurrency
        }
        for (scenario, connections), row in sorted(by_connections.items()):
            base_row = by_connections.get((goal.base, connections))
            if scenario != goal.scenario or base_row is None:
                continue
            rps, cpu_us, runs = _service_figures(row)
            base_rps, base_cpu_us, base_runs = _service_figures(base_row)
            if not base_rps:
                continue
            value = rps * goal.per_request / base_rps
            values.append(value)
            per_item = cpu_us / goal.per_request if cpu_us is not None else None
            cost = (f"; server CPU {per_item:,.0f} vs {base_cpu_us:,.0f} us = "
                    f"{per_item / base_cpu_us:.2f}x"
                    if per_item is not None and base_cpu_us else "")
            throughput = (f"{rps:,.1f} req/s x {goal.per_request} = "
                          f"{rps * goal.per_request:,.0f} tasks/s"
                          if goal.per_request > 1 else f"{rps:,.1f} req/s")
            parts.append(f"{report.name}/{connections} {value:.2f} ({goal.scenario} "
                         f"{throughput}{runs} vs {goal.base} {base_rps:,.1f} req/s"
                         f"{base_runs}{cost})")
    skipped = [f"{report.name}: skipped, {report.skipped[goal.scenario]}"
               for report in sets if goal.scenario in report.skipped]
    return Target(
        goal.target,
        "; ".join(parts + skipped) or f"{goal.scenario} or {goal.base} not run",
        _all_met(values, goal.threshold) if not skipped else None,
    )


def issue_15_targets(rows: list[Row], sets: list[SetReport]) -> list[Target]:
    """One line per target of issue 15 ("Targets (bench, same run, ratios)")."""
    return [same_run_target(goal, rows, sets) for goal in ISSUE_15_TARGETS]


def target_lines(found: list[Target]) -> list[str]:
    width = max((len(t.verdict) for t in found), default=0)
    return [f"  {t.verdict.ljust(width)}  {t.target}: {t.measured}" for t in found]


def print_report(
    header: list[str], rows: list[Row], sets: list[SetReport], out: TextIO
) -> None:
    print("\n".join(header), file=out)
    print(file=out)
    print(table(rows), file=out)
    extra = notes(rows) + skipped_lines(sets)
    if extra:
        print("\nNotes:", file=out)
        print("\n".join(f"  {line}" for line in extra), file=out)
    floors = floor_lines(rows)
    if floors:
        print("\nService and floor (bench/floor.py: bare WSGI, psycopg2, orjson, PyJWT, the "
              "service's SQL), alternating under the same gunicorn.conf.py; svc/floor = the "
              "service's mean req/s / the floor's:", file=out)
        print("\n".join(floors), file=out)
    print("\nPeak RSS per gunicorn worker (VmHWM at the end of the set's run, so after its "
          "last run):", file=out)
    print("\n".join(rss_lines(sets)), file=out)
    memory = memory_lines(rows)
    if memory:
        print("Worker memory right after each high-concurrency run (VmRSS):", file=out)
        print("\n".join(memory), file=out)
    changes = change_number_lines(sets)
    if changes:
        print("\nThe changes feed's cursors (computed when the data file was written, before "
              "any write of the run):", file=out)
        print("\n".join(changes), file=out)
    print("\nTargets (issue 11):", file=out)
    print("\n".join(target_lines(targets(rows, sets))), file=out)
    print("\nTargets (issue 15; same set and connections, met if at every connection count "
          "both ran; list and get: the mean of the service's runs; server CPU = gunicorn's "
          "CPU time per request, per task for batch):", file=out)
    print("\n".join(target_lines(issue_15_targets(rows, sets))), file=out)


def write_json(
    path: Path, meta: dict[str, Any], rows: list[Row], sets: list[SetReport]
) -> None:
    document = {
        "meta": meta,
        "sets": [vars(report) for report in sets],
        "results": [row.as_dict() for row in rows],
        "targets": [{**asdict(t), "verdict": t.verdict} for t in targets(rows, sets)],
        "targets_issue_15": [{**asdict(t), "verdict": t.verdict}
                             for t in issue_15_targets(rows, sets)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
