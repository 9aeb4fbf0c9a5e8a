"""gunicorn settings for production (`gunicorn -c gunicorn.conf.py wsgi:app`).

Every value can be overridden from the environment. The defaults suit a small machine
(2 cores): two processes per core, each with a few threads (the work is mostly waiting on
PostgreSQL), and a database pool per process as large as its thread count.

Why two processes per core: a process runs Python on one core at a time (the GIL), and the
kernel hands each new keep-alive connection to whichever process accepts first. With one
process per core, all of a client's connections sometimes landed in one process, which then
served them from one core while the other idled (measured: 640 instead of 1,050 reads/s at
16 connections, in one run of five). With four processes that no longer happened.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# One pooled connection per thread: a smaller pool makes busy threads open and close
# overflow connections on every request (a TCP + auth handshake each time).
os.environ.setdefault("DB_POOL_SIZE", str(threads))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
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

