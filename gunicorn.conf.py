"""gunicorn settings for production (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be overridden from the environment. The defaults suit a small machine
(2 cores): one process per core, each with a pool of threads (the work is mostly waiting on
PostgreSQL), and a database pool per process as large as its thread count.

Each worker listens on its own socket (`reuse_port`, SO_REUSEPORT), so the kernel spreads
new connections evenly over the workers. With one shared socket, whichever worker woke first
accepted, and in one run of five all 16 connections of a client that opened them at once
landed in one worker, which served them from one core while the other idled (540-640
instead of 1,050 reads/s). With per-worker sockets the two workers' CPU stayed within
0.58-0.72 cores of each other in every run.

Measured against two workers per core with 4 threads each (`make bench` scenarios, 6 s
runs): at 100 connections one worker per core has the tighter tail (toggle p95 157-180 ms
vs 192-231 ms, create 193-283 ms vs 256-448 ms).
"""

import multiprocessing
import os
import sys

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# One pooled connection per thread: a smaller pool makes busy threads open and close
# overflow connections on every request (a TCP + auth handshake each time).
os.environ.setdefault("DB_POOL_SIZE", str(threads))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
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

# Large enough that an oversized Authorization header reaches the app, which answers a
# clear 401 problem instead of gunicorn's bare 400 page.
limit_request_field_size = 128 * 1024

# The app writes its own structured access log (one JSON line per request).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Refuse to start, in one line, on settings the app refuses (config.py), before any
    worker boots: gunicorn replaces a worker that exits while booting, over and over. Here the
    real worker count is known, so rate limits counted per process are refused too."""
    from config import ConfigError, check_server_processes, load_config

    try:
        check_server_processes(load_config(), server.cfg.workers)
    except ConfigError as error:
        sys.exit(f"todo-api: configuration error: {error}")
