"""`python -m bench.sweep`: latency and throughput against the number of people, for one
replica and for two behind nginx, drawn as a PNG.

Each point is wrk's `users` scenario (each connection a person who pauses 2-8 s before each
request, `mixed`'s requests) at one connection count, through the topology of `make cluster`
(`deploy/cluster.py`: nginx, the replicas, PgBouncer; rate limiting off, as in the bench).
The data set is prepared as `python -m bench` prepares it (`--keep` reuses it).

The figure has two panels against connections (log scale): p50, p95 and p99 latency, and
requests per second; one line style per replica count. On one machine two replicas share the
same cores as one, so the curves say where one machine's capacity ends, not what a second
machine adds (README, "Capacity model").
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import pg, seed, server, wrk
from bench.datasets import data_sets
from bench.machine import snapshot, usage
from deploy.cluster import Cluster, raise_open_files_limit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONNECTIONS = (16, 64, 256, 1000, 2000, 3000, 5000)
PLOT_PATH = ROOT / "bench" / "capacity.png"


@dataclass(frozen=True)
class Point:
    replicas: int
    connections: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    other_cpu: float | None


def _numbers(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n")[0])
    p.add_argument("--set", default="large", choices=("small", "large"))
    p.add_argument("--replicas", type=_numbers, default=[1, 2])
    p.add_argument("--connections", type=_numbers, default=list(DEFAULT_CONNECTIONS))
    p.add_argument("--duration", type=int, default=30, help="seconds per point (default 30)")
    p.add_argument("--think-ms", default="2000,8000", help="pause before each request")
    p.add_argument("--keep", action="store_true", help="reuse the seeded database")
    p.add_argument("--plot", type=Path, default=PLOT_PATH, help=f"default {PLOT_PATH}")
    p.add_argument("--results-dir", type=Path,
                   default=ROOT / "bench" / "results" / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    return p.parse_args(argv)


def progress(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> list[Point]:
    wrk_path = wrk.find_wrk()
    if wrk_path is None:
        raise SystemExit("sweep: wrk is not installed (`make system-deps`)")
    raise_open_files_limit()
    low, _, high = args.think_ms.partition(",")
    think = (int(low), int(high or low))
    dataset = data_sets([args.set], False, "todo_bench")[0]
    server_url = pg.server_url()
    url = pg.database_url(server_url, dataset.database)
    secret = secrets.token_urlsafe(48)
    app_env = server.app_environment(url, secret, server.ServerOptions())
    progress(f"preparing {dataset.database}")
    seed.prepare(server_url, dataset, app_env, args.keep)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    data_path = args.results_dir / f"data-{dataset.name}.lua"
    wrk.write_data_file(data_path, dataset, wrk.make_tokens(secret, dataset.users),
                        seed.user_tag_names(url),
                        wrk.user_cursors(seed.change_positions(url, wrk.CHANGES_BEHIND)))
    points = []
    for replicas in args.replicas:
        progress(f"{replicas} replica(s) behind nginx")
        cluster = Cluster(url, replicas=replicas, secret=secret,
                          environ={"RATELIMIT_ENABLED": "false"},
                          workdir=args.results_dir / f"cluster-{replicas}")
        with cluster:
            wrk.run(wrk_path, "warmup", cluster.url, 8, 3, data_path=data_path, timeout=5,
                    threads=2, output_path=args.results_dir / "warmup.txt")
            for connections in args.connections:
                before = snapshot(None)
                result = wrk.run(
                    wrk_path, "users", cluster.url, connections, args.duration,
                    data_path=data_path, timeout=5, threads=2, think_ms=think,
                    output_path=args.results_dir / f"wrk-users-r{replicas}-c{connections}.txt",
                )
                cpu = usage(before, snapshot(None))
                point = Point(replicas, connections, result.rps, result.p50_ms, result.p95_ms,
                              result.p99_ms, result.error_count, cpu.other if cpu else None)
                progress(f"  {connections} connections: {point.rps:,.1f} req/s, p95 "
                         f"{point.p95_ms:,.1f} ms, p99 {point.p99_ms:,.1f} ms, "
                         f"{point.errors} errors")
                points.append(point)
    (args.results_dir / "sweep.json").write_text(
        json.dumps([asdict(point) for point in points], indent=2) + "\n"
    )
    return points


def plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {1: "-", 2: "--", 3: ":"}
    for replicas in sorted({point.replicas for point in points}):
        mine = [point for point in points if point.replicas == replicas]
        x = [point.connections for point in mine]
        style = styles.get(replicas, "-.")
        label = f"{replicas} replica{'s' if replicas > 1 else ''}"
        for name, color in (("p50_ms", "tab:green"), ("p95_ms", "tab:orange"),
                            ("p99_ms", "tab:red")):
            latency.plot(x, [getattr(point, name) for point in mine], style, color=color,
                         marker="o", label=f"{name[:3]}, {label}")
        throughput.plot(x, [point.rps for point in mine], style, color="tab:blue",
                        marker="o", label=label)
    for axis in (latency, throughput):
        axis.set_xscale("log")
        axis.set_xlabel("connections (people pausing 2-8 s between requests)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    latency.set_yscale("log")
    latency.set_ylabel("latency, ms")
    latency.axhline(100, color="grey", linewidth=0.8)
    latency.axhline(250, color="grey", linewidth=0.8, linestyle=":")
    throughput.set_ylabel("requests/s")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    points = measure(args)
    title = (f"todo-api `users` through nginx, {args.set} set, {args.duration} s per point, "
             f"{time.strftime('%Y-%m-%d')} (2-core machine shared with PostgreSQL and wrk)")
    plot(points, args.plot, title)
    progress(f"plot: {args.plot}; results: {args.results_dir}")
    for point in points:
        print(f"{point.replicas} replica(s) {point.connections:>5} conns: {point.rps:9,.1f} req/s"
              f"  p50 {point.p50_ms:9,.1f}  p95 {point.p95_ms:9,.1f}  p99 {point.p99_ms:9,.1f} ms"
              f"  errors {point.errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
