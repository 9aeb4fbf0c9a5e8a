"""The printed table (and the JSON file) of a bench run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, TextIO

from bench.machine import CpuUsage
from bench.pgbench import PgbenchResult
from bench.wrk import WrkResult

COLUMNS = ("scenario", "set", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
           "pgbench tps", "ratio", "other cpu")


@dataclass
class Row:
    set: str
    wrk: WrkResult
    pgbench: PgbenchResult | None = None
    pgbench_note: str | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu: CpuUsage | None = None
    pgbench_cpu: CpuUsage | None = None

    @property
    def ratio(self) -> float | None:
        if self.pgbench is None or not self.pgbench.tps:
            return None
        return self.wrk.rps / self.pgbench.tps

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.set,
            **self.wrk.as_dict(),
            "pgbench": self.pgbench.as_dict() if self.pgbench else None,
            "pgbench_note": self.pgbench_note,
            "ratio": self.ratio,
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
        label = f"{row.wrk.scenario}/{row.set}/{row.wrk.connections}"
        if row.wrk.error_count:
            e = row.wrk.errors
            failing = {code: n for code, n in row.wrk.statuses.items()
                       if not code.startswith("2")}
            lines.append(
                f"{label}: {row.wrk.error_count} errors: connect {e['connect']}, read "
                f"{e['read']}, write {e['write']}, timeout {e['timeout']}, non-2xx "
                f"{e['non2xx']} {failing or ''}".rstrip()
            )
        if row.pgbench_note:
            lines.append(f"{label}: {row.pgbench_note}")
        elif row.pgbench and (row.pgbench.exit_code or row.pgbench.failed):
            lines.append(
                f"{label}: pgbench exit {row.pgbench.exit_code}, {row.pgbench.failed} failed"
                " transactions"
            )
    return lines


def rss_lines(sets: list[SetReport]) -> list[str]:
    lines = []
    for report in sets:
        workers = {k: v for k, v in report.peak_rss_mb.items() if k.startswith("worker")}
        parts = [f"{name} {mb:.1f} MB" for name, mb in workers.items()]
        master = report.peak_rss_mb.get("master")
        suffix = f" (master {master:.1f} MB)" if master is not None else ""
        lines.append(f"  {report.name}: {', '.join(parts) or 'n/a'}{suffix}")
    return lines


def print_report(
    header: list[str], rows: list[Row], sets: list[SetReport], out: TextIO
) -> None:
    print("\n".join(header), file=out)
    print(file=out)
    print(table(rows), file=out)
    extra = notes(rows)
    if extra:
        print("\nNotes:", file=out)
        print("\n".join(f"  {line}" for line in extra), file=out)
    print("\nPeak RSS per gunicorn worker (VmHWM at the end of the set's run):", file=out)
    print("\n".join(rss_lines(sets)), file=out)


def write_json(
    path: Path, meta: dict[str, Any], rows: list[Row], sets: list[SetReport]
) -> None:
    document = {
        "meta": meta,
        "sets": [vars(report) for report in sets],
        "results": [row.as_dict() for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
