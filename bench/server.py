"""The service run the production way: `python -m gunicorn -c gunicorn.conf.py wsgi:app`
(and the floor, `bench.floor:create_app()`, under the same gunicorn.conf.py).

Production environment (`APP_ENV=production`, a random 48-byte secret, `DATABASE_URL`), with
rate limiting off: the bench measures the service, not the limiter. The JSON request log is
kept (logging is part of the real cost of a request) and written to a file.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerOptions:
    """gunicorn knobs passed through the environment `gunicorn.conf.py` reads (None: its
    default)."""

    workers: int | None = None
    threads: int | None = None
    worker_class: str | None = None


def app_environment(database_url: str, secret: str, options: ServerOptions) -> dict[str, str]:
    """The environment of the service (and of its migrations)."""
    env = {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": secret,
        "RATELIMIT_ENABLED": "false",
    }
    env.pop("MIGRATION_DATABASE_URL", None)
    if options.workers is not None:
        env["WEB_CONCURRENCY"] = str(options.workers)
    if options.threads is not None:
        env["GUNICORN_THREADS"] = str(options.threads)
    if options.worker_class is not None:
        env["GUNICORN_WORKER_CLASS"] = options.worker_class
    return env


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def effective_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """What `gunicorn.conf.py` resolves to in this environment (for the report header)."""
    with _environ(environ):
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return {
        name: conf[name]
        for name in ("workers", "worker_class", "threads", "worker_connections", "backlog",
                     "keepalive", "timeout")
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Gunicorn:
    """gunicorn serving `app` (default the service, `wsgi:app`) with gunicorn.conf.py on
    127.0.0.1:`port`, output appended to `log_path`. The app must answer `GET /health`."""

    def __init__(self, environ: Mapping[str, str], port: int, log_path: Path,
                 app: str = "wsgi:app") -> None:
        self.environ = {**environ, "BIND": f"127.0.0.1:{port}"}
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.expected_workers = int(effective_settings(self.environ)["workers"])
        self._log: IO[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.app],
            cwd=ROOT, env=self.environ, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._healthy() and len(self.worker_pids()) >= self.expected_workers:
                return
            time.sleep(0.1)
        tail = self.log_path.read_text()[-3000:]
        self.stop()
        raise RuntimeError(f"gunicorn did not start (log {self.log_path}):\n{tail}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        master = self.process.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _ppid(int(entry.name)) == master:
                pids.append(int(entry.name))
        return sorted(pids)

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of the master and of each live worker, in MB."""
        peaks: dict[str, float] = {}
        if self.process is not None:
            master = _status_kb(self.process.pid, "VmHWM")
            if master is not None:
                peaks["master"] = master / 1024
        for pid in self.worker_pids():
            value = _status_kb(pid, "VmHWM")
            if value is not None:
                peaks[f"worker {pid}"] = value / 1024
        return peaks

    def worker_memory_mb(self) -> dict[str, dict[str, float]]:
        """Each live worker's resident memory now (VmRSS) and its peak so far (VmHWM), MB."""
        memory: dict[str, dict[str, float]] = {}
        for pid in self.worker_pids():
            rss, peak = _status_kb(pid, "VmRSS"), _status_kb(pid, "VmHWM")
            if rss is not None and peak is not None:
                memory[f"worker {pid}"] = {"rss": rss / 1024, "peak": peak / 1024}
        return memory

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(35)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
