"""The README's walkthrough ("The API at a glance"), run as a newcomer runs it.

Its shell block is read from README.md and run command by command in a fresh `bash` at the
repository root, with only PATH and HOME set (no `APP_ENV`, `FLASK_APP` or secret: the
`flask` command gets them from `.flaskenv` and instance/dev-secret), against a server
started as `make run` starts one (`flask db upgrade`, then `flask run` with
`APP_ENV=development`, signing with the same instance/dev-secret) on a free port and a
temporary SQLite file. Two things differ from a newcomer's terminal: the README's
`127.0.0.1:5000` is replaced by the server's address, and a `curl` shell function adds
`-D <file>` to each curl so the test can read the response's status. Every step must exit 0
with nothing on stderr, and every request must answer the status its comment claims
(`# 201`), and the body too where the claim is JSON (`# 200: [...]`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"
README_ADDRESS = "127.0.0.1:5000"
CLAIM = re.compile(r"#\s*(\d{3})\b(?::\s*(.*))?$")


def walkthrough_block(readme: str) -> str:
    """The first ```sh block of the README's "The API at a glance" section."""
    section = readme.split("\n## The API at a glance\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's walkthrough has no ```sh block"
    return match.group(1)


@dataclass
class Step:
    command: str
    status: int | None = None  # what the README claims
    body: str | None = None  # the text after the status, if any


def steps(block: str) -> list[Step]:
    """The block's commands (continuation lines joined), comments alone on a line dropped."""
    result: list[Step] = []
    lines: list[str] = []
    for line in block.splitlines():
        if not lines and (not line.strip() or line.lstrip().startswith("#")):
            continue
        lines.append(line)
        if line.endswith("\\"):
            continue
        step = Step("\n".join(lines))
        claim = CLAIM.search(line)
        if claim:
            step.status = int(claim.group(1))
            step.body = claim.group(2)
        result.append(step)
        lines = []
    assert not lines, "the walkthrough ends in a continuation line"
    return result


@dataclass
class Outcome:
    step: Step
    exit_code: int
    stdout: str
    stderr: str
    status: int | None  # the last response's, if the step sent a request


def run(block: str, base: str, workdir: Path, environ: dict[str, str]) -> list[Outcome]:
    """Run the block's steps in one fresh bash; each step's exit code, output and status."""
    assert README_ADDRESS in block
    block = block.replace(README_ADDRESS, base.removeprefix("http://"))
    walk = steps(block)
    script = [f'curl() {{ command curl -D "{workdir}/head-$STEP" "$@"; }}']
    for number, step in enumerate(walk):
        script += [f"STEP={number}", "{", step.command,
                   f'}} > "{workdir}/out-{number}" 2> "{workdir}/err-{number}"',
                   f'echo $? > "{workdir}/rc-{number}"']
    subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(script)], cwd=ROOT,
                   env=environ, timeout=60, check=True)
    outcomes = []
    for number, step in enumerate(walk):
        head = workdir / f"head-{number}"
        status = None
        if head.exists():
            status = int(re.findall(r"^HTTP/[\d.]+ (\d{3})", head.read_text(), re.M)[-1])
        outcomes.append(Outcome(
            step, int((workdir / f"rc-{number}").read_text()),
            (workdir / f"out-{number}").read_text(), (workdir / f"err-{number}").read_text(),
            status,
        ))
    return outcomes


def check(outcomes: list[Outcome]) -> None:
    assert any(outcome.status for outcome in outcomes), "the walkthrough sent no request"
    for outcome in outcomes:
        step = outcome.step
        where = f"README walkthrough step:\n{step.command}\n"
        assert outcome.exit_code == 0, where + outcome.stderr
        assert outcome.stderr == "", where + outcome.stderr
        if outcome.status is None:
            assert step.status is None, where + "claims a status but sent no request"
            continue
        assert step.status is not None, where + "sends a request but says nothing of its status"
        assert outcome.status == step.status, where + f"answered {outcome.status}: {outcome.stdout}"
        if step.body:
            try:
                claimed = json.loads(step.body)
            except ValueError:
                continue  # prose, not a body
            assert json.loads(outcome.stdout) == claimed, where + outcome.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cannot_run(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def shell_environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh shell's variables: PATH and HOME, nothing else. So the walkthrough's `flask`
    gets its settings from `.flaskenv` and signs with the development secret that `make run`
    keeps in instance/dev-secret (made on first use), as the server does."""
    if not (ROOT / ".venv" / "bin" / "flask").exists():
        _cannot_run("no .venv/bin/flask at the repository root (the walkthrough's commands use it)")
    curl = shutil.which("curl")
    version = ""
    if curl:
        version = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout
    found = re.match(r"curl (\d+)\.(\d+)", version)
    if not found or (int(found.group(1)), int(found.group(2))) < (7, 84):
        _cannot_run(f"curl 7.84 or later is needed, as the README says (found: {version[:12] or 'none'})")
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path_factory.mktemp("walkthrough"))}


@pytest.fixture(scope="module")
def server(shell_environment: dict[str, str]) -> Iterator[str]:
    """The service as `make run` starts it: migrate, then `flask run`, in development (on a
    database of its own rather than instance/todo.db)."""
    home = Path(shell_environment["HOME"])
    environment = {**shell_environment, "APP_ENV": "development", "FLASK_APP": "wsgi",
                   "DATABASE_URL": f"sqlite:///{home / 'todo.db'}"}
    subprocess.run([str(FLASK), "db", "upgrade"], cwd=ROOT, env=environment, check=True,
                   capture_output=True, timeout=60)
    port = _free_port()
    log = home / "flask-run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(FLASK), "run", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
            env=environment, stdout=output, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _serving(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flask run did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _serving(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/health", timeout=1).read()
    except OSError:
        return False
    return True


def test_the_readme_walkthrough_runs_as_written(server, shell_environment, tmp_path):
    block = walkthrough_block((ROOT / "README.md").read_text())
    outcomes = run(block, server, tmp_path, shell_environment)
    check(outcomes)
    claimed = [outcome.step.status for outcome in outcomes if outcome.step.status]
    assert claimed == [201, 200, 200, 200, 200, 200, 204]


def test_a_broken_walkthrough_fails(server, shell_environment, tmp_path):
    # The guard guards: a token for another user than the URLs' (the walkthrough's old
    # mismatch) makes the first request a 403 where the README claims 201.
    block = walkthrough_block((ROOT / "README.md").read_text())
    broken = block.replace("token create demo-user", "token create alice")
    assert broken != block
    with pytest.raises(AssertionError, match="answered 403"):
        check(run(broken, server, tmp_path, shell_environment))
