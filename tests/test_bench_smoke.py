"""The benchmark harness still runs: `python -m bench --smoke` end to end, seconds long.

Nothing about speed is asserted: only that every part of the report is there (the floor
comparison, the high-concurrency runs, the targets of issues 11 and 15). `batch` runs when the
service has the batch endpoint; without it the report says it was skipped, and why. It needs
PostgreSQL (the test server) and wrk; without them the test is skipped with the reason, except
under CI=true, where that is a failure.
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
    for column in ("scenario", "pgbench tps", "ratio", "floor req/s", "svc/floor"):
        assert column in table, table
    skipped = re.search(r"^  batch/small: skipped: the service has no batch endpoint", table,
                        re.MULTILINE)
    ran = [scenario for scenario in SCENARIOS if not (skipped and scenario == "batch")]
    for scenario in ran:
        assert re.search(rf"^{scenario}\s+small\s+4\s+[\d,.]+", table, re.MULTILINE), table
    assert "Peak RSS per gunicorn worker" in table
    assert re.search(r"small, after users at 64 connections: worker \d+ [\d.]+ MB", table), table

    # The high-concurrency runs: mixed, then users (the same with pauses between requests)
    # at each of its connection counts, each followed by the workers' memory.
    assert re.search(r"^mixed\s+small\s+32\s+[\d,.]+", table, re.MULTILINE), table
    for connections in (32, 64):
        assert re.search(rf"^users\s+small\s+{connections}\s+[\d,.]+\s", table, re.MULTILINE)
        assert re.search(rf"^  users/small/{connections}: worker \d+ [\d.]+ MB", table,
                         re.MULTILINE), table

    # list and get: the floor ran after the service, and the ratio is in the table.
    for scenario in ("list", "get"):
        assert re.search(rf"^{scenario}\s+small\s+4\s.*\s[\d,.]+\s+\d\.\d\d\s+\d+%$", table,
                         re.MULTILINE), table
        assert re.search(rf"^  {scenario}/small/4: service [\d,.]+ -> floor [\d,.]+ req/s: "
                         r"svc/floor \d\.\d\d", table, re.MULTILINE), table

    # One line per target of issue 11, each with a verdict.
    targets = table[table.index("Targets (issue 11):"):]
    for target in ("users at 32 connections", "users at 64 connections",
                   "peak RSS per worker after users at 64 connections", "mixed at 32 never-pausing",
                   "get / floor >= 0.75", "list / floor >= 0.85", "create / get >= 0.6",
                   "tags / get >= 0.9"):
        assert re.search(rf"^  (met|NOT met|n/a)\s+{re.escape(target)}", targets,
                         re.MULTILINE), targets

    # One line per target of issue 15, each with a verdict (batch's n/a only when skipped).
    targets = table[table.index("Targets (issue 15"):]
    for target in ("poll / list >= 3", "changes (nothing new) / get >= 1",
                   "changes100 / list >= 1/1.2", "batch tasks/s (req/s x 50) / create req/s"):
        assert re.search(rf"^  (met|NOT met|n/a)\s+{re.escape(target)}", targets,
                         re.MULTILINE), targets
    # The changes feed's cursors stand where the seed left them (smoke: 50 tasks per user).
    assert "small: users at change numbers 50-50;" in table, table

    document = json.loads((tmp_path / "out.json").read_text())
    results = document["results"]
    assert {row["scenario"] for row in results} == {*ran, "users"}
    by_scenario = {row["scenario"]: row for row in results if row["connections"] == 4}
    # A poll is answered 304 (anything else counts as an error).
    assert set(by_scenario["poll"]["statuses"]) == {"304"}, by_scenario["poll"]
    assert by_scenario["poll"]["error_count"] == 0
    assert all(row["server_cpu_us_per_request"] for row in results)
    users = [row for row in results if row["scenario"] == "users"]
    assert [row["connections"] for row in users] == [32, 64]
    assert all(row["requests"] > 0 and row["error_count"] == 0 for row in users)
    assert all(row["worker_memory_mb"] for row in users)
    for row in results:
        if row["scenario"] in ("list", "get"):
            floor = row["floor"]
            assert floor["rps"] > 0 and floor["ratio"] > 0 and len(floor["runs"]) == 1
            assert floor["runs"][0]["error_count"] == 0
        else:
            assert row["floor"] is None
    assert len(document["targets"]) == 8
    assert {target["verdict"] for target in document["targets"]} <= {"met", "NOT met"}
    verdicts = [target["verdict"] for target in document["targets_issue_15"]]
    assert len(verdicts) == 4 and set(verdicts[:3]) <= {"met", "NOT met"}, verdicts
    assert verdicts[3] in (("n/a",) if skipped else ("met", "NOT met")), verdicts
    assert document["sets"][0]["change_numbers"] == {
        "latest_min": 50, "latest_max": 50, "changes100_tasks_min": 50,
        "changes100_tasks_max": 50,
    }
    if find_pgbench() is not None:
        # list and get carry a pgbench figure and a ratio.
        compared = [row for row in results if row["scenario"] in ("list", "get")]
        assert compared and all(row["pgbench"]["tps"] and row["ratio"] for row in compared)
