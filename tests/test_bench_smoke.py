"""The benchmark harness still runs: `python -m bench --smoke` end to end, seconds long.

Nothing about speed is asserted. It needs PostgreSQL (the test server) and wrk; without them
the test is skipped with the reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.pgbench import find_pgbench
from bench.wrk import SCENARIOS
from tests.conftest import DEFAULT_PG_URL, IN_CI, require_postgres

ROOT = Path(__file__).resolve().parent.parent


def _require_wrk() -> None:
    if shutil.which("wrk"):
        return
    reason = "wrk is not installed (Debian package wrk; `make test` installs it)"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true)", pytrace=False)
    pytest.skip(reason)


def test_bench_smoke_runs_every_scenario(tmp_path: Path) -> None:
    require_postgres()
    _require_wrk()
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL,
    }
    prefix = f"todo_bench_smoke_{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--connections", "4",
         "--db-prefix", prefix, "--drop-after", "--results-dir", str(tmp_path),
         "--json", str(tmp_path / "out.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    table = result.stdout
    assert "scenario" in table and "pgbench tps" in table and "ratio" in table, table
    for scenario in SCENARIOS:
        assert re.search(rf"^{scenario}\s+small\s+4\s+[\d,.]+", table, re.MULTILINE), table
    assert "Peak RSS per gunicorn worker" in table
    assert re.search(r"worker \d+ [\d.]+ MB", table), table

    # The high-concurrency runs: mixed, then users (the same with pauses between requests).
    assert re.search(r"^mixed\s+small\s+32\s+[\d,.]+", table, re.MULTILINE), table
    assert re.search(r"^users\s+small\s+32\s+[\d,.]+\s", table, re.MULTILINE), table

    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert {row["scenario"] for row in results} == {*SCENARIOS, "users"}
    users = next(row for row in results if row["scenario"] == "users")
    assert users["requests"] > 0 and users["error_count"] == 0
    if find_pgbench() is not None:
        # list and get carry a pgbench figure and a ratio.
        compared = [row for row in results if row["scenario"] in ("list", "get")]
        assert compared and all(row["pgbench"]["tps"] and row["ratio"] for row in compared)
