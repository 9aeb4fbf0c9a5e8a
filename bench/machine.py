"""How busy the machine was during a measurement, and with what.

The load average counts the bench's own threads (gunicorn's, wrk's, PostgreSQL's), so it
says little about outside noise. Each measurement instead splits the machine's CPU time
(/proc/stat: user, nice, system, steal) into
- bench: this process and its children (wrk, pgbench, the gunicorn masters and workers);
- postgres: every postmaster and its backends (those serving other databases too);
- other: the rest, i.e. other people's work on the machine (and time stolen by a hypervisor),
as percentages of the machine's total CPU capacity. Exited processes are not lost: the time
of waited-for children is in their parent's `cutime`/`cstime` (`os.times()` for ours, the
postmaster's for backends). Linux only; elsewhere the figures are None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    total: int
    busy: int
    bench: float
    postgres: int


@dataclass(frozen=True)
class CpuUsage:
    """Percent of the machine's CPU capacity (100 = every core busy)."""

    busy: float
    bench: float
    postgres: float
    other: float


def _processes() -> dict[int, tuple[str, int, list[int]]]:
    """pid -> (command name, parent pid, [utime, stime, cutime, cstime])."""
    processes = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        processes[int(entry.name)] = (name, int(fields[1]), [int(v) for v in fields[11:15]])
    return processes


def snapshot(*server_pids: int | None) -> Snapshot | None:
    """The CPU counters now; `server_pids` are gunicorn masters whose live workers count as
    the bench's (the service's and the floor's)."""
    try:
        cpu = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        processes = _processes()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (cpu + [0] * 8)[:8]

    times = os.times()
    bench = (times.user + times.system + times.children_user + times.children_system) * HZ
    for server_pid in server_pids:
        if server_pid is not None and server_pid in processes:
            bench += sum(processes[server_pid][2])
            bench += sum(sum(t[:2]) for _, ppid, t in processes.values() if ppid == server_pid)

    postmasters = {
        pid for pid, (name, ppid, _) in processes.items()
        if name == "postgres" and processes.get(ppid, ("",))[0] != "postgres"
    }
    postgres = sum(sum(processes[pid][2]) for pid in postmasters)
    postgres += sum(sum(t[:2]) for _, ppid, t in processes.values() if ppid in postmasters)

    return Snapshot(
        total=sum(cpu[:8]), busy=user + nice + system + steal, bench=bench, postgres=postgres
    )


def usage(before: Snapshot | None, after: Snapshot | None) -> CpuUsage | None:
    if before is None or after is None or after.total <= before.total:
        return None
    scale = 100 / (after.total - before.total)
    busy = (after.busy - before.busy) * scale
    bench = (after.bench - before.bench) * scale
    postgres = (after.postgres - before.postgres) * scale
    return CpuUsage(
        busy=busy, bench=bench, postgres=postgres, other=max(0.0, busy - bench - postgres)
    )


def server_cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by a gunicorn master `pid` and its workers (live ones, and the
    ones it has waited for), in seconds; None where /proc cannot tell."""
    if pid is None:
        return None
    try:
        processes = _processes()
    except OSError:
        return None
    if pid not in processes:
        return None
    ticks = sum(processes[pid][2])
    ticks += sum(sum(t[:2]) for _, ppid, t in processes.values() if ppid == pid)
    return ticks / HZ
