"""Where a gunicorn worker's Python time goes, from a py-spy profile.

    py-spy record --pid <worker> --gil --rate 250 --duration 15 --format raw -o get.raw
    python -m bench.pyspy_summary get.raw

`--gil` keeps only samples of the thread holding the GIL, so the shares are shares of the
worker's Python time (what limits a worker's throughput), not of threads waiting on the
database. The report groups samples by layer (the last frame's package), then lists the
functions with the largest inclusive share.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Checked in order: the first package found in a frame's file names its layer.
LAYERS = (
    "gunicorn", "flask_smorest", "flask_sqlalchemy", "flask_cors", "flask", "werkzeug",
    "sqlalchemy", "psycopg2", "marshmallow", "webargs", "jwt", "pythonjsonlogger", "orjson",
    "todo", "logging", "concurrent", "selectors", "threading", "email", "json", "uuid",
)
# Frames every thread of a worker starts from (its threads, and the gunicorn arbiter code the
# worker process was forked in): on every stack of their thread, so not informative.
ROOT_FUNCTIONS = frozenset({
    "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker", "_run_code",
    "_run_module_as_main", "<module>", "run", "Application.run", "BaseApplication.run",
    "Arbiter.run", "Arbiter.manage_workers", "Arbiter.spawn_workers", "Arbiter.spawn_worker",
})


@dataclass(frozen=True)
class Stack:
    frames: tuple[str, ...]
    samples: int


def parse(lines: Iterable[str]) -> list[Stack]:
    """py-spy's `--format raw` (collapsed stacks): `frame;frame;... count` per line."""
    stacks = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        stacks.append(Stack(tuple(frames.split(";")), int(count)))
    return stacks


def function_and_file(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


def layer(frame: str) -> str:
    _, file = function_and_file(frame)
    parts = re.split(r"[/.]", file)
    for name in LAYERS:
        if name in parts:
            return name
    return file or frame


def by_layer(stacks: Sequence[Stack]) -> Counter[str]:
    """Samples by the layer of the frame that was running (self time)."""
    counts: Counter[str] = Counter()
    for stack in stacks:
        counts[layer(stack.frames[-1])] += stack.samples
    return counts


def inclusive(stacks: Sequence[Stack]) -> Counter[str]:
    """Samples in which each function was on the stack (counted once per sample)."""
    counts: Counter[str] = Counter()
    for stack in stacks:
        seen = set()
        for frame in stack.frames:
            function, file = function_and_file(frame)
            if function in ROOT_FUNCTIONS:
                continue
            name = f"{function} ({file})"
            if name not in seen:
                seen.add(name)
                counts[name] += stack.samples
    return counts


def report(stacks: Sequence[Stack], top: int) -> str:
    total = sum(stack.samples for stack in stacks)
    if not total:
        return "no samples"
    lines = [f"{total} samples holding the GIL", "", "self time by layer:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in by_layer(stacks).most_common()
              if 100 * n / total >= 0.5]
    lines += ["", f"top {top} functions, inclusive:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}"
              for name, n in inclusive(stacks).most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    args = parser.parse_args(argv)
    print(report(parse(args.profile.read_text().splitlines()), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
