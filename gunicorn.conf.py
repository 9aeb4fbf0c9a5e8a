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

from gunicorn.workers import gthread

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

# gthread gives each new connection to a thread, which then waits for the first request for
# up to DEFAULT_WORKER_DATA_TIMEOUT (5 s; a module constant, not a setting) before handing
# the connection to the poller. Clients that connect and send later (a browser's preconnect,
# a person's first click) held the threads that way, one after another: 1,000 people with
# 2-8 s between requests (`make bench`'s `users`) got p95 2.4 s at 180 req/s, against 21 ms
# for 200 connections at the same rate. Waiting 10 ms sends such connections to the poller,
# which waits on all of them at once: p95 20-33 ms. The same bound limits how long a thread
# drains a request body the app did not read (it must stay above 0: at 0 gunicorn treats
# every body as undrained and closes every connection after one request).
if not hasattr(gthread, "DEFAULT_WORKER_DATA_TIMEOUT"):
    raise RuntimeError("gunicorn's gthread no longer has DEFAULT_WORKER_DATA_TIMEOUT")
gthread.DEFAULT_WORKER_DATA_TIMEOUT = max(
    0.001, float(os.environ.get("GUNICORN_FIRST_REQUEST_WAIT", "0.01"))
)

# Large enough that an oversized Authorization header reaches the app, which answers a
# clear 401 problem instead of gunicorn's bare 400 page.
limit_request_field_size = 128 * 1024

# The app writes its own structured access log (one JSON line per request).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
