"""pgbench on exactly the SQL the service sends for `list` and `get`.

The script is the recorded statement sequence of one request (see `bench.sqlcapture`), one
pgbench command per query string the service sent, with the user id and the task id turned
into pgbench variables. pgbench substitutes variables as text, inside quoted literals too, so
the server receives the same statement text the service sends, with other values; both use
the simple query protocol (`-M simple`: psycopg2 inlines literals, it never prepares). The ids
come from the seeded-id formula (`bench.datasets`) computed in pgbench's own `\\set`
expressions: client-side arithmetic, no extra statement, so nothing is measured that the
service does not do.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.datasets import (
    ID_HEAD_BASE,
    ID_MULTIPLIER,
    ID_OFFSET,
    ID_SPREAD,
    ID_TAIL_BASE,
    USER_PREFIX,
    DataSet,
    task_id,
    user_id,
)

USER_VARIABLE = "bench_user"


def find_pgbench() -> str | None:
    """`PGBENCH`, else pgbench on PATH, else the newest /usr/lib/postgresql/*/bin/pgbench."""
    configured = os.environ.get("PGBENCH")
    if configured:
        return configured
    on_path = shutil.which("pgbench")
    if on_path:
        return on_path
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pgbench")
    candidates.sort(key=lambda path: int(re.sub(r"\D", "", path.split("/")[4]) or 0))
    return candidates[-1] if candidates else None


def random_task_commands(dataset: DataSet) -> list[str]:
    """Pick a random seeded task of a random user (same choice as the wrk scripts)."""
    per_user = dataset.tasks_per_user
    return [
        f"\\set {USER_VARIABLE} random(1, {dataset.users})",
        f"\\set bench_task random(1, {per_user})",
        f"\\set bench_k (:{USER_VARIABLE} - 1) * {per_user} + :bench_task",
        f"\\set bench_head {ID_HEAD_BASE} + (:bench_k * {ID_MULTIPLIER} + {ID_OFFSET})"
        f" % {ID_SPREAD}",
        f"\\set bench_tail {ID_TAIL_BASE} + :bench_k",
    ]


def pgbench_command(query: str) -> str:
    """One recorded query string as one pgbench command, so pgbench sends it in one Query
    message as the service did. pgbench ends a command at every `;` outside quotes and sends
    each part on its own (`SET LOCAL` would then run outside the SELECT's transaction), so
    the separators between statements become `\\;`, which pgbench sends as `;` in one query.

    Only what psycopg2 and SQLAlchemy produce is handled: quoted literals and identifiers.
    Comments, dollar quotes and E'' strings are refused rather than guessed at."""
    text = query.strip().rstrip(";").rstrip()
    command: list[str] = []
    quote: str | None = None
    for index, char in enumerate(text):
        if quote is not None:
            quote = None if char == quote else quote  # '' and "" escapes close and reopen
        elif char in "'\"":
            if char == "'" and _is_escape_string_prefix(text, index):
                raise RuntimeError(f"E'' strings are not supported in a pgbench script:\n{text}")
            quote = char
        elif char == ";":
            command.append("\\;")
            continue
        elif text.startswith(("--", "/*", "$"), index):
            raise RuntimeError(f"cannot write this query as one pgbench command:\n{text}")
        command.append(char)
    return "".join(command) + ";"


def _is_escape_string_prefix(text: str, quote_index: int) -> bool:
    """Whether the quote at `quote_index` opens an E'...' string (backslash escapes)."""
    if quote_index == 0 or text[quote_index - 1] not in "eE":
        return False
    before = text[quote_index - 2] if quote_index >= 2 else " "
    return not (before.isalnum() or before in "_$")


def script(statements: list[str], replacements: dict[str, str], commands: list[str]) -> str:
    """A pgbench script: `commands`, then `statements` (one pgbench command each) with each
    literal of `replacements` replaced by its variable form. Every literal must occur, or the
    capture went wrong."""
    body = "\n".join(pgbench_command(statement) for statement in statements)
    for literal, variable in replacements.items():
        if literal not in body:
            raise RuntimeError(f"{literal!r} does not occur in the recorded SQL:\n{body}")
        body = body.replace(literal, variable)
    return "\n".join([*commands, body]) + "\n"


def list_script(statements: list[str], dataset: DataSet, user: int) -> str:
    """`statements` were recorded for user number `user`'s default listing."""
    return script(
        statements,
        {f"'{user_id(user)}'": f"'{USER_PREFIX}:{USER_VARIABLE}'"},
        [f"\\set {USER_VARIABLE} random(1, {dataset.users})"],
    )


def get_script(statements: list[str], dataset: DataSet, user: int, index: int) -> str:
    """`statements` were recorded for seeded task `index` of user number `user`."""
    return script(
        statements,
        {
            f"'{user_id(user)}'": f"'{USER_PREFIX}:{USER_VARIABLE}'",
            task_id(user, index, dataset.tasks_per_user): ":bench_head-0000-4000-8000-:bench_tail",
        },
        random_task_commands(dataset),
    )


@dataclass
class PgbenchResult:
    connections: int
    duration: int
    tps: float | None
    latency_avg_ms: float | None
    transactions: int | None
    failed: int
    exit_code: int
    script: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def run(
    pgbench: str,
    database_url: str,
    script_path: Path,
    connections: int,
    duration: int,
    threads: int,
    output_path: Path,
) -> PgbenchResult:
    command = [
        pgbench, "--no-vacuum", "--protocol=simple",
        f"--client={connections}", f"--jobs={max(1, min(threads, connections))}",
        f"--time={duration}", f"--file={script_path}", database_url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    output = completed.stdout + completed.stderr
    output_path.write_text(output)
    transactions = _number(r"^number of transactions actually processed: (\d+)", output)
    failed = _number(r"^number of failed transactions: (\d+)", output)
    return PgbenchResult(
        connections=connections,
        duration=duration,
        tps=_number(r"^tps = ([\d.]+) \(without initial connection time\)", output),
        latency_avg_ms=_number(r"^latency average = ([\d.]+) ms", output),
        transactions=int(transactions) if transactions is not None else None,
        failed=int(failed or 0),
        exit_code=completed.returncode,
        script=str(script_path),
    )
