"""The several-replica topology on one machine, from real components on loopback:

    client -> nginx -> N x gunicorn (the shipped gunicorn.conf.py) -> PgBouncer -> PostgreSQL
                                   \\-> Redis (the rate-limit counters)

`Cluster` starts it (the database migrated through its direct URL, as with Neon) and stops it;
tests use it as a context manager (tests/test_cluster.py). `python -m deploy.cluster` (what
`make cluster` runs) starts it in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import jwt
import sqlalchemy as sa

from deploy.pgbouncer import PGBOUNCER, PgBouncer

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
PLACEHOLDER = re.compile(r"\$\{(TODO_[A-Z0-9_]+)\}")
# How long nginx leaves a replica alone after it failed a request (`fail_timeout` of every
# upstream server). A rolling restart waits this long after a replica is back before stopping
# the next, so nginx has taken the first one back by then.
FAIL_TIMEOUT_SECONDS = 2


def render_nginx_conf(values: Mapping[str, str]) -> str:
    """deploy/nginx.conf with its `${TODO_...}` placeholders filled in, as the nginx image's
    envsubst fills them in compose.yaml; a placeholder without a value is an error."""
    text = NGINX_TEMPLATE.read_text()
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise ValueError(f"no value for {', '.join(missing)} in the nginx template")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET of `url`, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def raise_open_files_limit() -> None:
    """As many descriptors as allowed, for this process and the ones it starts: nginx holds
    two per proxied request, and thousands of slow clients each one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def ensure_database(database_url: str) -> None:
    """Create the database of `database_url` on its server if it does not exist."""
    url = sa.engine.make_url(database_url).set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": url.database},
            ).scalar()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    finally:
        admin.dispose()


class Nginx:
    """nginx run from deploy/nginx.conf in the foreground, as a child process, with its own
    config, prefix, pid file, logs and port under `workdir`: a system nginx (the Debian
    package may start one on port 80) is neither used nor disturbed.

    `upstream_servers` is the upstream block's server lines; `values` adds or overrides
    template values."""

    def __init__(self, workdir: Path, port: int, upstream_servers: str,
                 values: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.values = {
            "TODO_LISTEN": f"127.0.0.1:{port}",
            "TODO_UPSTREAM_SERVERS": upstream_servers,
            "TODO_MAX_BODY_SIZE": "65536",
            "TODO_ALLOWED_ORIGINS": "http://localhost:3000",
            "TODO_ACCESS_LOG": str(self.access_log_path),
            "TODO_ERROR_LOG": str(self.error_log_path),
            "TODO_PID_FILE": str(workdir / "nginx.pid"),
            "TODO_TEMP_DIR": str(workdir / "nginx-temp"),
            **(values or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "nginx-access.log"

    @property
    def error_log_path(self) -> Path:
        return self.workdir / "nginx-error.log"

    def start(self, health_check: bool = True) -> None:
        """Start nginx and wait until `/health` answers 200 through it (or, without
        `health_check`, until it takes connections)."""
        (self.workdir / "nginx-temp").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(render_nginx_conf(self.values))
        # `-e`: what nginx says before it has read the config goes to our log too, not to
        # /var/log/nginx (which an unprivileged user cannot open).
        command = [NGINX, "-p", str(self.workdir), "-c", str(config),
                   "-e", str(self.error_log_path), "-g", "daemon off;"]
        raise_open_files_limit()
        with (self.workdir / "nginx-output.log").open("a") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output_text = (self.workdir / "nginx-output.log").read_text()
                raise RuntimeError(f"nginx exited while starting:\n{output_text}\n{self.errors()}")
            if health_check and http_status(self.url + "/health") == 200:
                return
            if not health_check and _listening(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer within 20 s:\n{self.errors()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reload(self, upstream_servers: str, settle: float = 1.0) -> None:
        """Serve from `upstream_servers` from now on: rewrite the config and signal the
        master (SIGHUP), whose new workers take new requests while the old ones finish
        theirs; then wait `settle` seconds for the old ones to be done."""
        if self.process is None:
            raise RuntimeError("nginx is not running")
        self.values["TODO_UPSTREAM_SERVERS"] = upstream_servers
        (self.workdir / "nginx.conf").write_text(render_nginx_conf(self.values))
        self.process.send_signal(signal.SIGHUP)
        time.sleep(settle)

    def stop(self) -> None:
        """A graceful stop: requests in flight are completed first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def access_log(self) -> list[dict[str, Any]]:
        """The access log so far, one dict per request (deploy/nginx.conf's `todo` format)."""
        if not self.access_log_path.exists():
            return []
        return [json.loads(line) for line in self.access_log_path.read_text().splitlines()
                if line.strip()]

    def errors(self) -> str:
        path = self.error_log_path
        return path.read_text()[-3000:] if path.exists() else ""


@dataclass
class Replica:
    """One gunicorn server (its master and workers, in a process group of their own)."""

    index: int
    port: int
    log_path: Path
    metrics_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: TextIO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """As nginx names it in `$upstream_addr`."""
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """nginx in front of `replicas` gunicorn servers, PgBouncer in transaction mode in front
    of the PostgreSQL database at `database_url`, rate limits counted in Redis at `redis_url`
    under `key_prefix`. `environ` adds or overrides the replicas' environment.

    Everything listens on 127.0.0.1: nginx on `port` (a free one if 0), replica i on
    `replica_ports[i]` (free ones if not given). Files (nginx's config and logs, the replicas'
    logs) are kept in `workdir` (if not given, a temporary directory removed by `stop()`).
    """

    def __init__(
        self,
        database_url: str,
        *,
        replicas: int = 2,
        port: int = 0,
        replica_ports: list[int] | None = None,
        redis_url: str = "redis://127.0.0.1:6379/2",
        key_prefix: str | None = None,
        secret: str | None = None,
        metrics_token: str | None = None,
        environ: Mapping[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        if replicas < 1:
            raise ValueError("a cluster needs at least one replica")
        self.database_url = database_url
        self.redis_url = redis_url
        self.key_prefix = key_prefix or f"todo-cluster-{uuid.uuid4().hex[:8]}"
        self.secret = secret or secrets.token_urlsafe(32)
        self.metrics_token = metrics_token or secrets.token_urlsafe(32)
        self.environ = dict(environ or {})
        ports = replica_ports or [free_port() for _ in range(replicas)]
        if len(ports) != replicas:
            raise ValueError("one port per replica")
        # A temporary directory made here is removed by stop(); a given one is kept.
        self.own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="todo-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # nginx's workers (an unprivileged user when started as root) write temporary files
        # under it: the directory must be reachable by them.
        self.workdir.chmod(0o755)
        self.replicas = [
            Replica(i, replica_port, self.workdir / f"replica-{i}.log",
                    self.workdir / f"replica-{i}-metrics")
            for i, replica_port in enumerate(ports)
        ]
        self.pgbouncer: PgBouncer | None = None
        self.port = port or free_port()
        environ = self._base_environ()
        self.nginx = Nginx(self.workdir, self.port, self.upstream_servers(), {
            "TODO_MAX_BODY_SIZE": environ.get("MAX_CONTENT_LENGTH", "65536"),
            "TODO_ALLOWED_ORIGINS": environ["ALLOWED_ORIGINS"],
        })

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """nginx: where clients go."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def replica_urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    @property
    def pooled_database_url(self) -> str:
        """The database through PgBouncer (the replicas' DATABASE_URL)."""
        if self.pgbouncer is None:
            raise RuntimeError("the cluster is not running")
        return self.pgbouncer.url_for(self.database_url)

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Cluster:
        try:
            self._migrate()
            self.pgbouncer = PgBouncer(
                sa.engine.make_url(self.database_url), default_pool_size=10,
                max_db_connections=20,
            )
            for replica in self.replicas:
                self._start_process(replica)
            for replica in self.replicas:
                self._wait_until_ready(replica)
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """nginx first (it finishes what it is passing on), then the replicas, PgBouncer last."""
        self.nginx.stop()
        for replica in self.replicas:
            if replica.running():
                self.stop_replica(replica.index)
        if self.pgbouncer is not None:
            self.pgbouncer.stop()
            self.pgbouncer = None
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _migrate(self) -> None:
        """`flask db upgrade` through the direct URL, as the README says for Neon."""
        environ = {**self._base_environ(), "DATABASE_URL": self.database_url}
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"migrating the database failed:\n{result.stdout[-3000:]}")

    def _base_environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "APP_ENV": "production",
            "BETTER_AUTH_SECRET": self.secret,
            "ALLOWED_ORIGINS": "http://localhost:3000",
            "MIGRATION_DATABASE_URL": self.database_url,
            "RATELIMIT_STORAGE_URI": self.redis_url,
            "RATELIMIT_KEY_PREFIX": self.key_prefix,
            "METRICS_TOKEN": self.metrics_token,
            # nginx appends the client's address to X-Forwarded-For.
            "TRUSTED_PROXY_COUNT": "1",
            **self.environ,
        }

    def replica_environ(self, replica: Replica) -> dict[str, str]:
        return {
            **self._base_environ(),
            "DATABASE_URL": self.pooled_database_url,
            "BIND": replica.address,
            # prometheus_client's multiprocess mode: one directory per replica, emptied at
            # each start (the replica's workers share it; replicas must not).
            "PROMETHEUS_MULTIPROC_DIR": str(replica.metrics_dir),
        }

    def _start_process(self, replica: Replica) -> None:
        shutil.rmtree(replica.metrics_dir, ignore_errors=True)
        replica.metrics_dir.mkdir(parents=True)
        replica.log_file = replica.log_path.open("a")
        # A process group of its own: killing the replica kills its workers too, and a Ctrl-C
        # meant for the launcher does not reach it before the launcher stops it in order.
        replica.process = subprocess.Popen(
            GUNICORN, cwd=ROOT, env=self.replica_environ(replica),
            stdout=replica.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _wait_until_ready(self, replica: Replica, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not replica.running():
                raise RuntimeError(
                    f"replica {replica.index} exited while starting:\n"
                    f"{replica.log_path.read_text()[-3000:]}"
                )
            if http_status(replica.url + "/health/ready") == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"replica {replica.index} was not ready within {timeout} s:\n"
                           f"{replica.log_path.read_text()[-3000:]}")

    # ------------------------------------------------------------------ replicas

    def stop_replica(self, index: int, sig: signal.Signals = signal.SIGTERM,
                     timeout: float = 40) -> int:
        """Send `sig` to replica `index` (SIGTERM: gunicorn's graceful stop; SIGKILL: to its
        whole process group, as a crash would end it) and wait for it to exit; its exit code."""
        replica = self.replicas[index]
        if replica.process is None:
            raise RuntimeError(f"replica {index} is not running")
        process = replica.process
        if process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        if sig == signal.SIGKILL:
            # Its workers may outlive the master for a moment; wait until the port is free.
            self._wait_for_port_closed(replica)
        if replica.log_file is not None:
            replica.log_file.close()
            replica.log_file = None
        return code

    def start_replica(self, index: int) -> None:
        """Start replica `index` again, on its port, and wait until it is ready."""
        replica = self.replicas[index]
        if replica.running():
            raise RuntimeError(f"replica {index} is running")
        self._start_process(replica)
        self._wait_until_ready(replica)

    def upstream_servers(self, out_of_rotation: int | None = None) -> str:
        """nginx's server lines for the replicas; `out_of_rotation` is marked `down`."""
        return " ".join(
            f"server {replica.address} max_fails=1 fail_timeout={FAIL_TIMEOUT_SECONDS}s"
            + (" down" if replica.index == out_of_rotation else "") + ";"
            for replica in self.replicas
        )

    def rolling_restart(self) -> None:
        """Restart the replicas one at a time, each out of nginx's rotation first: reload
        nginx with the replica marked `down` (new requests go to the others), SIGTERM it
        (gunicorn finishes the requests it has and exits), start it, wait until it is
        ready, and put it back. No request meets a stopping replica, so none is refused or
        cut off whatever its method: nginx need not retry a PUT or a DELETE."""
        for replica in self.replicas:
            self.nginx.reload(self.upstream_servers(out_of_rotation=replica.index))
            self.stop_replica(replica.index, signal.SIGTERM)
            self.start_replica(replica.index)
            self.nginx.reload(self.upstream_servers())

    def _wait_for_port_closed(self, replica: Replica, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while _listening(replica.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    # ------------------------------------------------------------------ what happened

    def access_log(self) -> list[dict[str, Any]]:
        """nginx's access log so far, one dict per request (deploy/nginx.conf's format)."""
        return self.nginx.access_log()

    def replica_log(self, index: int) -> str:
        return self.replicas[index].log_path.read_text()

    def nginx_errors(self) -> str:
        return self.nginx.errors()

    def token(self, user_id: str, ttl_seconds: int = 3600) -> str:
        """A token the replicas accept, shaped like the frontend's (HS256)."""
        now = int(time.time())
        return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, self.secret,
                          algorithm="HS256")


def nginx_available() -> bool:
    return Path(NGINX).exists()


# ---------------------------------------------------------------------- make cluster


def _secret_for_make_cluster() -> str:
    """BETTER_AUTH_SECRET from the environment, else one generated once into instance/, so
    tokens printed by an earlier `make cluster` keep working."""
    given = os.environ.get("BETTER_AUTH_SECRET", "").strip()
    if given:
        return given
    path = ROOT / "instance" / "cluster-secret"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _wait_for_signal(cluster: Cluster) -> Iterator[str]:
    """Yields once a second until SIGINT or SIGTERM; says which child stopped, if one did."""
    stopping: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    reported: set[int] = set()
    while not stopping:
        if not cluster.nginx.running():
            yield "nginx exited; stopping"
            return
        for replica in cluster.replicas:
            if not replica.running() and replica.index not in reported:
                reported.add(replica.index)
                yield f"replica {replica.index} exited (see {replica.log_path})"
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.cluster",
        description="Start nginx, N gunicorn replicas, PgBouncer (transaction mode) in front of "
                    "PostgreSQL, rate limits in Redis; Ctrl-C stops everything.",
    )
    parser.add_argument("--replicas", type=int,
                        default=int(os.environ.get("CLUSTER_REPLICAS", "2")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLUSTER_PORT", "8080")),
                        help="nginx's port; replica i listens on port + 1 + i (default 8080)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "instance" / "cluster",
                        help="nginx's config and the logs (default instance/cluster)")
    args = parser.parse_args(argv)
    database_url = os.environ.get(
        "CLUSTER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/todo_cluster"
    )
    redis_url = os.environ.get("CLUSTER_REDIS_URL", "redis://127.0.0.1:6379/2")
    for program, path in (("nginx", NGINX), ("pgbouncer", PGBOUNCER)):
        if not Path(path).exists():
            print(f"cluster: {program} is not installed (Debian package {program}; "
                  "`make system-deps` installs it)", file=sys.stderr)
            return 1
    try:
        ensure_database(database_url)
    except sa.exc.OperationalError as error:
        print(f"cluster: cannot reach PostgreSQL for {sa.engine.make_url(database_url)!r}: "
              f"{str(error.orig).strip()}", file=sys.stderr)
        return 1
    cluster = Cluster(
        database_url, replicas=args.replicas, port=args.port,
        replica_ports=[args.port + 1 + i for i in range(args.replicas)],
        redis_url=redis_url, key_prefix="todo-cluster", secret=_secret_for_make_cluster(),
        metrics_token=os.environ.get("METRICS_TOKEN") or None,
        workdir=args.workdir,
    )
    print(f"cluster: starting nginx on :{args.port}, {args.replicas} replicas, PgBouncer, "
          f"database {sa.engine.make_url(database_url)!r}, Redis {redis_url} ...", flush=True)
    secret_setting = ("" if os.environ.get("BETTER_AUTH_SECRET", "").strip()
                      else "BETTER_AUTH_SECRET=$(cat instance/cluster-secret) ")
    with cluster:
        replicas = ", ".join(replica.url for replica in cluster.replicas)
        print(f"""
  todo-api through nginx:  {cluster.url}     (docs: {cluster.url}/docs)
  replicas (direct):       {replicas}
  PgBouncer:               {sa.engine.make_url(cluster.pooled_database_url)!r}
  logs:                    {cluster.workdir}/ (nginx-access.log, replica-N.log)

  A token for user 'demo-user', valid one hour:
    {cluster.token("demo-user")}
  Another one:
    {secret_setting}APP_ENV=production .venv/bin/flask --app wsgi token create USER_ID
  Metrics of replica 0 (each replica has its own):
    curl -H 'Authorization: Bearer {cluster.metrics_token}' {cluster.replicas[0].url}/metrics

  Ctrl-C stops everything.
""", flush=True)
        for message in _wait_for_signal(cluster):
            print(f"cluster: {message}", flush=True)
        print("cluster: stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
