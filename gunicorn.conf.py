"""gunicorn settings for production (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be overridden from the environment. The defaults suit a small machine
(2 cores): one process per core, each with a pool of threads (the work is mostly waiting on
PostgreSQL), and a database pool per process as large as its thread count.

Each worker listens on its own socket (`reuse_port`, SO_REUSEPORT), so the kernel spreads
new connections evenly over the workers; with one shared socket, whichever worker woke first
accepted, and a client's connections could all land in one worker while another idled.
Both choices were measured; the figures are in bench/README.md ("Results, dated").
"""

import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
from typing import Protocol

from config import ConfigError, check_server_processes, load_config
from todo.serving.worker import BufferedThreadWorker

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# gthread, except that the event loop reads each request in full before a thread runs it,
# so idle and slow clients hold no thread (todo/serving/worker.py). GUNICORN_WORKER_CLASS
# picks another (e.g. `gthread`, to compare).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or BufferedThreadWorker.configure(
    # From a request's first byte to its last; then 408 and the connection is closed.
    request_read_timeout=float(os.environ.get("GUNICORN_REQUEST_READ_TIMEOUT", "15")),
)
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# One pooled connection per thread: a smaller pool makes busy threads open and close
# overflow connections on every request (a TCP + auth handshake each time).
os.environ.setdefault("DB_POOL_SIZE", str(threads))
# Open connections per worker. With the event loop holding idle ones, each costs a socket
# and a few kilobytes, not a thread: thousands of people between clicks fit.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").lower() in ("1", "true", "yes")
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Longer than a load balancer's idle timeout (AWS ALB: 60 s), so it never sends a request on
# a connection gunicorn has just closed (a 502), and long enough that a person's next click
# reuses the connection. An idle connection costs gthread a poller entry, up to
# worker_connections per worker.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))

# The worker bounds the request line (32 KiB) and the whole head (64 KiB) itself, answering
# 414 / 431 as problem+json, so gunicorn's parser must not cut them shorter: a listing URL
# with 50 tag filters of 50 characters fits, and an oversized Authorization header reaches
# the app, which answers a clear 401 problem. (0 is "unlimited" for the request line.)
limit_request_line = 0
limit_request_field_size = 64 * 1024


# What the hooks below read of gunicorn's objects (gunicorn ships no type information).
class _Settings(Protocol):
    workers: int


class _Arbiter(Protocol):
    cfg: _Settings
    reexec_pid: int


class _Worker(Protocol):
    pid: int


def on_starting(server: _Arbiter) -> None:
    """Before any worker boots: refuse, in one line, settings the app refuses (config.py),
    as gunicorn would otherwise replace a worker that exits while booting over and over (here
    the real worker count is known, so rate limits counted per process are refused too); let
    the workers use as many descriptors as the system allows, one per connection; and give
    them a directory for their metrics."""
    try:
        check_server_processes(load_config(), server.cfg.workers)
        _prepare_metrics_directory()
    except ConfigError as error:
        sys.exit(f"todo-api: configuration error: {error}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Workers write their metrics to files in PROMETHEUS_MULTIPROC_DIR, and a scrape of any of
# them adds up all the files (prometheus_client's multiprocess mode, todo/pipeline/metrics.py).
# The variable
# must be set before the workers fork: prometheus_client reads it when a worker first imports
# it. So nothing here imports prometheus_client at the top.
_metrics_directory_made = ""


def _prepare_metrics_directory() -> None:
    """Use PROMETHEUS_MULTIPROC_DIR if given, else a fresh directory for this server's run
    (so its counters start at zero, as a restarted process's would)."""
    global _metrics_directory_made
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if given:
        if not os.path.isdir(given):
            raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR {given!r} is not a directory")
        return
    _metrics_directory_made = tempfile.mkdtemp(prefix="todo-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_directory_made


def child_exit(server: _Arbiter, worker: _Worker) -> None:
    """In the master, after a worker exited or was killed: its gauges (pool connections in
    use, threads waiting) stop counting; its counters and histograms still do."""
    from prometheus_client import multiprocess

    # prometheus_client (0.26) leaves this function unannotated; it takes the pid (an int).
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: _Arbiter) -> None:
    """Remove the metrics directory made at start, unless a new master (gunicorn's USR2
    upgrade) has taken over and uses it."""
    if _metrics_directory_made and not server.reexec_pid:
        shutil.rmtree(_metrics_directory_made, ignore_errors=True)


# The app writes its own structured access log (one JSON line per request).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which
# several servers on one machine (replicas, tests, the bench) would take from each other.
# Set GUNICORN_CONTROL_SOCKET to a path of this server's own to use `gunicornc`.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
