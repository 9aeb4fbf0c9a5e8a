"""A real PgBouncer in transaction mode (what Neon's `-pooler` endpoint is) in front of a
PostgreSQL server: for running the test suite through it, and in the several-replica
topology (`deploy/cluster.py`)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """PgBouncer on a loopback port, for every database of `server`'s PostgreSQL.

    Clients are trusted (it listens on loopback only); it logs in to the server as the
    client's user with the password of `server`'s URL, if any. The default pool sizes suit
    the shared test server: few, short-lived server connections, as its max_connections (100)
    is shared by both pytest workers and anything else running on it.
    """

    def __init__(self, server: sa.engine.URL, *, port: int = 0, default_pool_size: int = 10,
                 max_db_connections: int = 15, max_client_conn: int = 1000) -> None:
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="todo-pgbouncer-"))
        user = server.username or "postgres"
        password = (server.password or "").replace('"', '""')
        (self.root / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        (self.root / "userlist.txt").chmod(0o600)
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"max_client_conn = {max_client_conn}\n"
            f"default_pool_size = {default_pool_size}\nmax_db_connections = {max_db_connections}\n"
            "server_idle_timeout = 5\n"
            "query_wait_timeout = 30\nlog_connections = 0\nlog_disconnections = 0\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        command = [PGBOUNCER, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            entry = pwd.getpwnam("postgres")
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            command = ["runuser", "-u", "postgres", "--", *command]
        # Its log goes to `logfile`; an unread pipe would fill up and stall PgBouncer. Its own
        # session, so a Ctrl-C meant for whoever started it does not stop it first.
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PgBouncer did not start: {self.log()}")

    def url_for(self, database_url: str) -> str:
        """The same database, reached through PgBouncer."""
        url = sa.engine.make_url(database_url)
        return url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def available() -> bool:
    return Path(PGBOUNCER).exists()
