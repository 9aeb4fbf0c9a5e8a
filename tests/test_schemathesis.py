"""schemathesis (4.x) against the running service's own `/openapi.json`.

Every phase (examples, coverage, fuzzing, stateful) and every check (`--checks all`) run
against a real threaded server on PostgreSQL, with a valid bearer token: no 5xx, and every
response must conform to the document (status code, content type, headers, body schema);
schema-valid requests must be accepted and schema-violating ones rejected. The stateful
phase chains create -> get -> put/patch/complete -> delete through the document's OpenAPI
`links` (and the `Location` header). The run is bounded and seeded, so it is reproducible.

Configuration, all in the `schemathesis.toml` this test writes (no check is excluded):

- The path's `user_id` is pinned to the token's `sub`: any other value is a 403 by contract.
- Two identities (Web Fuzzing Commons auth file): the owner, whose token every request
  carries, and a peer. This is what makes `object_level_authorization` active: it replays the
  owner's successful reads of the objects it created as the peer and fails if the peer gets
  them. (Without a second identity the check has nothing to compare and passes vacuously.)
  `ignored_auth` needs nothing: it resends requests without and with a broken token and
  expects 401.
- `positive_data_acceptance` also accepts 412 on PUT, PATCH and DELETE: a well-formed
  `If-Match` that is not the task's current ETag is 412 as API.md requires, and no schema
  can tell a current ETag from a stale one, so generated If-Match values are schema-valid and
  almost always stale. Every other default expectation stays.
- A schema-valid `Idempotency-Key` is replaced by a fresh UUID just before each request is
  sent (a `before_call` hook), as a real client uses one key per request: schemathesis
  would otherwise send the same few keys (the documented example, `0`, `!`) with every
  operation, and the service would rightly answer most writes 422 (the key used for another
  request) or replay them. Malformed keys are sent as generated (400 expected).
- The batch (`batchTasks`) also accepts 400 and 413 for schema-valid bodies: a `"$ref"` id
  must name the `ref` of an earlier create of the same batch and two creates may not share a
  ref, which no schema can say (generated refs rarely line up); a valid `if_match` is almost
  always stale (412); and 100 valid operations can exceed the body limit (413), which is also
  how an oversized invalid body is refused.
- The changes feed (`listChanges`) also accepts 400 and 410: a cursor must be one the feed
  handed out to this user (410 once its deletions are forgotten), which no schema can say.
  The erasure (`eraseAccount`) also accepts 400: `confirm` must equal the path's user id,
  which the `before_call` hook makes a generated `confirm` string, as a client sends it.
- Any schemathesis warning (unsupported pattern, unused auth, ...) fails the run.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_config, make_token, serve
from todo import create_app
from todo.extensions import db

pytestmark = pytest.mark.postgres_only

OWNER = "schemathesis-user"
PEER = "schemathesis-peer"
SEED = 20261124
MAX_EXAMPLES = 100
PHASES = ("examples", "coverage", "fuzzing", "stateful")
RUN_TIMEOUT_SECONDS = 600

CONFIG = """\
hooks = {hooks_file}

[parameters]
"path.user_id" = {owner}

[auth.wfc]
path = {auth_file}
user = "owner"
peers = ["owner", "peer"]

[warnings]
fail-on = true

# Reproducible from the seed alone: no examples or crashes replayed from earlier runs.
[generation]
database = "none"

[cache]
enabled = false

[[operations]]
include-operation-id = ["putTask", "patchTask", "deleteTask"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", 401, 403, 404, 409, 412, 429, "5xx",
]

[[operations]]
include-operation-id = ["batchTasks"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", 400, 401, 403, 404, 409, 412, 413, 429, "5xx",
]
checks.negative_data_rejection.expected-statuses = [
    400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx",
]

[[operations]]
include-operation-id = ["listChanges"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", 400, 401, 403, 404, 409, 410, 429, "5xx",
]

[[operations]]
include-operation-id = ["eraseAccount"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx",
]
"""

HOOKS = """\
import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~]{1,255}")


@schemathesis.hook
def before_call(context, case, **kwargs):
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    query = case.query or {}
    if case.method == "DELETE" and isinstance(query.get("confirm"), str):
        query["confirm"] = (case.path_parameters or {}).get("user_id", query["confirm"])
"""


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
def base_url(postgres_database: str, database_url: str) -> Iterator[str]:
    del database_url  # empties the tables first
    app = create_app(
        make_config(postgres_database, RATELIMIT_ENABLED="false", LOG_LEVEL="WARNING")
    )
    with serve(app) as base:
        yield base
    with app.app_context():
        db.engine.dispose()


def write_config(directory: Path) -> Path:
    def identity(name: str, user_id: str) -> dict[str, Any]:
        token = make_token(user_id, exp=int(time.time()) + RUN_TIMEOUT_SECONDS + 60)
        return {
            "name": name,
            "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {token}"}],
        }

    auth_file = directory / "auth.json"
    auth_file.write_text(json.dumps({"auth": [identity("owner", OWNER), identity("peer", PEER)]}))
    hooks_file = directory / "hooks.py"
    hooks_file.write_text(HOOKS)
    config = directory / "schemathesis.toml"
    # JSON strings are valid TOML basic strings.
    config.write_text(CONFIG.format(owner=json.dumps(OWNER), auth_file=json.dumps(str(auth_file)),
                                    hooks_file=json.dumps(str(hooks_file))))
    return config


def cases_per_phase(report_dir: Path) -> dict[str, int]:
    """Test cases of each phase, from the NDJSON event stream."""
    counts: collections.Counter[str] = collections.Counter()
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if finished:
                counts[finished["phase"]] += len((finished.get("recorder") or {}).get("cases", {}))
    return {phase: counts[phase] for phase in PHASES}


def test_schemathesis_finds_nothing(base_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    report_dir = tmp_path / "reports"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{base_url}/openapi.json",
        "--phases", ",".join(PHASES),
        "--checks", "all",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--request-timeout", "10",
        "--report", "json,ndjson",
        "--report-dir", str(report_dir),
    ]
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=tmp_path,  # schemathesis and Hypothesis keep their state in the working directory
        env={**os.environ, "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=RUN_TIMEOUT_SECONDS,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr

    assert result.returncode == 0, f"schemathesis exited with {result.returncode}:\n{output}"
    print(output)
    report = json.loads(next(report_dir.glob("*.json")).read_text())
    operations = report["operations"]
    cases = report["test_cases"]
    per_phase = ", ".join(f"{phase} {count}" for phase, count in cases_per_phase(report_dir).items())
    print(
        f"schemathesis: {operations['tested']}/{operations['total']} operations tested, "
        f"{cases['generated']} test cases ({per_phase}), seed {SEED}, "
        f"max-examples {MAX_EXAMPLES}, {elapsed:.1f} s"
    )
    assert operations["tested"] == operations["total"] > 0, operations
    assert all(phase["status"] == "success" for phase in report["phases"].values()), report
    assert cases["generated"] > 0 and cases["with_failures"] == cases["errored"] == 0
