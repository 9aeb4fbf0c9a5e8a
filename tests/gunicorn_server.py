"""The service run the production way: gunicorn with the shipped `gunicorn.conf.py`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


COMMAND = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def environment(database_url: str, port: int, **environ: str) -> dict[str, str]:
    """A production environment with two workers and no rate limits, plus `environ`."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "ALLOWED_ORIGINS": "http://localhost:3000",
        "RATELIMIT_ENABLED": "false",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "LOG_LEVEL": "WARNING",
        **environ,
    }


def refusal(database_url: str, **environ: str) -> tuple[int, str]:
    """Start gunicorn with settings it must refuse; its exit code and output (it is killed,
    and the test fails, if it is still running after 20 s)."""
    result = subprocess.run(
        COMMAND, cwd=ROOT, env=environment(database_url, _free_port(), **environ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20,
    )
    return result.returncode, result.stdout


class Gunicorn:
    """gunicorn serving `wsgi:app` with the shipped config and a production environment;
    `environ` overrides variables. Its output (the JSON request log) is kept for `output()`."""

    def __init__(self, database_url: str, **environ: str) -> None:
        self.port = _free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="todo-gunicorn-", suffix=".log")[1])
        self.log_file = self.log_path.open("w")
        self.process = subprocess.Popen(
            COMMAND, cwd=ROOT, env=environment(database_url, self.port, **environ),
            stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start:\n{self.output()[-3000:]}")

    def worker_pids(self) -> list[int]:
        output = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in output.split()]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log_file.close()

    def output(self) -> str:
        return self.log_path.read_text()


